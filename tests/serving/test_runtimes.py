"""The server runs a version with TorchScript or ONNX Runtime (`RLOPS_SERVING_RUNTIME`), both
answering the same actions; `auto` measures both at load, keeps the faster and says which; a
version registered before the ONNX export serves TorchScript."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import httpx
import pytest
import torch
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from rl_core.policy.policy_integrity import DIGESTS_TAG, encode_digests, folder_digests
from rl_core.policy.policy_model import save_policy_model
from rl_core.sac.networks import Actor
from rlops_registry.registry import ModelRegistry
from rlops_serving.policy import load_policy
from tests.serving.conftest import AUTH, MODEL, running_server, settings
from tests.serving.policies import ENV_ID, HIDDEN

OBSERVATIONS = [[0.5, -0.3, 0.8], [1.0, 0.0, -8.0], [-0.2, 0.9, 3.5]]
INFO = "rlops_serving_model_runtime_info"


def _served(runtime: str) -> tuple[list[list[float]], str]:
    """The actions the server answers with `runtime`, and the runtime its metrics name."""
    with running_server(settings(runtime=runtime)) as server:
        response = httpx.post(
            f"{server.url}/v1/act", json={"observations": OBSERVATIONS}, headers=AUTH, timeout=10
        )
        assert response.status_code == 200, response.text
        (labels,) = [dict(labels) for name, labels in server.scrape() if name == INFO]
    return response.json()["actions"], labels["runtime"]


def test_onnx_runtime_and_torchscript_answer_the_same_actions(champion: str) -> None:
    onnx_actions, onnx_runtime = _served("onnx")
    torchscript_actions, torchscript_runtime = _served("torchscript")
    assert (onnx_runtime, torchscript_runtime) == ("onnx", "torchscript")
    assert len(onnx_actions) == len(OBSERVATIONS)
    for ours, theirs in zip(onnx_actions, torchscript_actions, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-5)


def test_auto_picks_a_runtime_and_says_which(champion: str, caplog) -> None:
    caplog.set_level(logging.INFO, logger="rlops_serving")
    _, runtime = _served("auto")
    (chosen,) = [
        match.groups()
        for record in caplog.records
        if (match := re.search(r"runtime auto chose (\w+) \(batch-1 median", record.getMessage()))
    ]
    assert chosen == (runtime,)
    assert runtime in {"onnx", "torchscript"}


def test_an_unknown_runtime_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match=r"runtime\n  Input should be 'torchscript', 'onnx' or"):
        settings(runtime="tensorrt")


def _register_pre_onnx_version(tmp_path: Path) -> str:
    """A version whose folder is what the export wrote before ONNX existed: no actor.onnx
    (nor its MLmodel entry), digests recorded and registered as the pipeline does."""
    torch.manual_seed(5)
    folder = tmp_path / "policy"
    save_policy_model(
        Actor(3, 1, HIDDEN, torch.tensor([-2.0]), torch.tensor([2.0])), ENV_ID, folder
    )
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    del mlmodel["flavors"]["python_function"]["artifacts"]["actor_onnx"]
    del mlmodel["metadata"]["rlops"]["onnx_max_abs_diff_vs_eager"]
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (folder / "artifacts" / "actor.onnx").unlink()
    client = MlflowClient()
    experiment_id = client.create_experiment("pre-onnx")
    run_id = client.create_run(experiment_id).info.run_id
    digests = {DIGESTS_TAG: encode_digests(folder_digests(folder))}
    logged = client.create_logged_model(experiment_id, source_run_id=run_id, tags=digests)
    client.log_model_artifacts(logged.model_id, str(folder))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    version = ModelRegistry(MODEL).register(
        f"models:/{logged.model_id}", logged.model_id, run_id, f"tests/{run_id}", {}
    )
    return str(version.version)


def test_a_version_registered_before_onnx_serves_torchscript(
    mlflow_store: str, tmp_path: Path, caplog
) -> None:
    version = _register_pre_onnx_version(tmp_path)
    for runtime in ("auto", "onnx"):
        policy = load_policy(MODEL, version, runtime)
        assert policy.runtime == "torchscript"
        assert len(policy.act(OBSERVATIONS)) == len(OBSERVATIONS)
    assert f"{MODEL} v{version} has no ONNX actor (exported before ONNX): serving TorchScript" in [
        record.getMessage() for record in caplog.records
    ]
