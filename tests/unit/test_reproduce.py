"""`rlops reproduce`: a run rebuilt from its MLflow record gives the same returns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from rl_core.common import cpu
from rl_core.run import lineage
from rl_core.run.cli import main
from rl_core.run.reproduce import REPRODUCES_TAG, MetricRow, compare, reproduce, resolve_run_id

TINY = [
    "total_timesteps=300",
    "hidden_sizes=[32,32]",
    "batch_size=32",
    "learning_starts=50",
    "eval_seeds=[1000,1001]",
]


@pytest.fixture
def original_run(mlflow_store, tmp_path) -> str:
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
                "--experiment",
                "repro",
                "--set",
                *TINY,
            ]
        )
        == 0
    )
    (run,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("repro").experiment_id]
    )
    return run.info.run_id


def test_lineage_is_logged_on_every_tracked_run(original_run) -> None:
    client = MlflowClient()
    tags = client.get_run(original_run).data.tags
    assert tags["lineage.torch"] == torch.__version__
    assert tags["lineage.matmul_precision"] == cpu.resolve_matmul_precision("auto", 32)
    assert tags["lineage.step_compiler"] == "torchscript"  # a short run: not worth compiling
    assert tags["lineage.env_spec_version"] == "1"
    assert tags["lineage.seed"] == "0"
    assert tags["lineage.eval_seeds"] == "[1000, 1001]"
    assert len(tags["lineage.config_hash"]) == 16
    assert tags["lineage.git_sha"]
    assert tags["lineage.cpu"]
    artifacts = {a.path for a in client.list_artifacts(original_run, "lineage")}
    assert artifacts == {"lineage/lineage.json", "lineage/pip-freeze.txt"}


def test_same_machine_reproduces_exactly(original_run, capsys) -> None:
    assert main(["reproduce", original_run, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "same code, packages and machine" in out
    assert "reproduced" in out and "NOT" not in out
    client = MlflowClient()
    (again,) = client.search_runs(
        [client.get_experiment_by_name("repro").experiment_id],
        filter_string=f"tags.`{REPRODUCES_TAG}` = '{original_run}'",
    )
    assert again.info.run_id != original_run
    original = client.get_run(original_run).data.metrics["eval_mean_return"]
    assert again.data.metrics["eval_mean_return"] == original


def test_a_run_reproduces_with_the_config_it_logged(mlflow_store, tmp_path) -> None:
    """Not re-resolved against today's presets: a MountainCar run logged before `use_sde`
    existed explored with Gaussian noise, whatever the preset says now."""
    train = ["train", "--out", str(tmp_path / "run"), "--no-progress", "--experiment", "old"]
    gaussian = ["env_id=MountainCarContinuous-v0", "use_sde=false", *TINY]
    assert main([*train, "--set", *gaussian]) == 0
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("old").experiment_id])
    path = Path(download_artifacts(run_id=run.info.run_id, artifact_path="config.yaml"))
    logged = yaml.safe_load(path.read_text())
    del logged["use_sde"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(logged))
    client.log_artifact(run.info.run_id, str(tmp_path / "config.yaml"))
    result = reproduce(run.info.run_id, show_progress=False)
    assert result.passed, result.rows


def test_differences_from_the_original_are_listed(original_run, monkeypatch) -> None:
    monkeypatch.setattr(lineage, "git_sha", lambda: "0" * 40)
    result = reproduce(original_run, show_progress=False)
    assert result.differences["git_sha"][1] == "0" * 40
    assert result.passed  # other code only on paper: the numbers still match


def test_model_alias_resolves_to_its_source_run(original_run) -> None:
    client = MlflowClient()
    client.create_registered_model("repro-model")
    version = client.create_model_version(
        "repro-model", f"runs:/{original_run}/model", run_id=original_run
    )
    client.set_registered_model_alias("repro-model", "champion", version.version)
    assert resolve_run_id("models:/repro-model@champion") == original_run
    assert resolve_run_id(f"models:/repro-model/{version.version}") == original_run


def test_comparison_fails_outside_the_tolerance() -> None:
    before = {"mean": -150.0, "std": 10.0, "seeds": [1, 2], "returns": [-140.0, -160.0]}
    after = {"mean": -150.5, "std": 10.0, "seeds": [1, 2], "returns": [-141.0, -160.0]}
    rows = compare(before, after, tolerance=0.75)
    assert [r.name for r in rows] == ["mean return", "std return", "seed 1", "seed 2"]
    assert [r.passed for r in rows] == [True, True, False, True]
    assert MetricRow("x", 1.0, 1.0, 0.0).passed


def test_reproduce_without_mlflow_says_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match="MLFLOW_TRACKING_URI"):
        reproduce("abc")
