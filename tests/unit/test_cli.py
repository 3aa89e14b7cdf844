import json
import subprocess
import sys

import imageio.v3 as iio
import pytest
import torch

from rl_core.policy.checkpoint import save_actor
from rl_core.policy.policy_source import ACCEPTED
from rl_core.run.cli import main
from rl_core.sac.networks import Actor


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "bench", "video"])
def test_every_subcommand_has_help(command: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rl_core", command, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()


def test_train_evaluate_export_bench(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run_dir),
                "--no-progress",
                "--set",
                "total_timesteps=300",
                "hidden_sizes=[32,32]",
                "batch_size=32",
                "learning_starts=50",
                "eval_seeds=[1000,1001]",
            ]
        )
        == 0
    )
    checkpoint = run_dir / "checkpoint.pt"
    assert checkpoint.exists()
    assert "mean return" in capsys.readouterr().out

    assert main(["evaluate", str(checkpoint), "--seeds", "1000-1002", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeds"] == [1000, 1001, 1002]
    assert len(result["returns"]) == 3

    assert main(["export", str(checkpoint), "--out", str(tmp_path / "policy")]) == 0
    assert (tmp_path / "policy" / "MLmodel").exists()
    assert "max |Δaction|" in capsys.readouterr().out
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "policy")]) == 2  # no overwrite
    assert "exists already" in capsys.readouterr().err

    assert main(["bench", str(checkpoint), "--calls", "30", "--batch-sizes", "1,8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["batch_size"] for r in rows] == [1, 8]
    assert all(r["onnx_median_us"] > 0 for r in rows)  # ONNX Runtime beside TorchScript

    # The same policy, whatever form it is given in, acts the same.
    for form in (run_dir / "actor.pt", run_dir, tmp_path / "policy"):
        assert main(["evaluate", str(form), "--seeds", "1000-1002", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["returns"] == pytest.approx(
            result["returns"], abs=0.5
        )

    gif = tmp_path / "episode.gif"
    assert main(["video", str(tmp_path / "policy"), "--out", str(gif), "--max-frames", "4"]) == 0
    assert f"episode on env seed 1000 of Pendulum-v1 -> {gif}" in capsys.readouterr().out
    assert iio.imread(gif, index=None).shape[1:] == (256, 256, 3)


def test_video_of_an_env_that_cannot_render_is_one_line(
    env_without_rendering, tmp_path, capsys
) -> None:
    actor = Actor(3, 1, (8, 8), torch.tensor([-1.0]), torch.tensor([1.0]))
    policy = save_actor(tmp_path / "actor.pt", actor, env_without_rendering)
    assert main(["video", str(policy), "--out", str(tmp_path / "x.gif")]) == 2
    out = capsys.readouterr().err
    assert "error: env 'Blind-v0' cannot render rgb_array frames: its render modes are []" in out
    assert "Traceback" not in out


POLICY_REFUSALS = [
    (["evaluate", "no/such/checkpoint.pt"], "no/such/checkpoint.pt: no such file or folder"),
    (
        ["evaluate", "README.md"],
        "README.md: not an rlops actor file or training checkpoint",
    ),
    (["evaluate", "tests"], "tests: a folder with no MLmodel, actor.pt or checkpoint.pt"),
    (["bench", "missing.pt"], "missing.pt: no such file or folder"),
]


@pytest.mark.parametrize(("arguments", "message"), POLICY_REFUSALS)
def test_a_source_that_is_no_policy_is_one_line_naming_it(capsys, arguments, message) -> None:
    """The line names the source and what is wrong, then the forms a policy can take."""
    assert main(arguments) == 2
    out = capsys.readouterr().err
    assert message in out
    assert f"give {ACCEPTED}" in out
    assert "Traceback" not in out


def test_registry_uris_are_policies_too(mlflow_store, capsys) -> None:
    from rlops_registry.registry import ModelRegistry
    from tests.serving.policies import register_policy

    ModelRegistry("cli-model").crown(register_policy("cli-model", reward=-1.0))
    for uri in ("models:/cli-model@champion", "models:/cli-model/1"):
        assert main(["evaluate", uri, "--seeds", "1000", "--json"]) == 0, uri
        assert len(json.loads(capsys.readouterr().out)["returns"]) == 1
    assert main(["evaluate", "models:/cli-model@nosuchalias"]) == 2
    assert "models:/cli-model@nosuchalias:" in capsys.readouterr().err
    assert main(["export", "models:/cli-model@champion", "--out", "x"]) == 2
    assert "is an exported policy; export needs the trained actor" in capsys.readouterr().err


CLI_REFUSALS = [
    (["--set", "gamma=2"], "gamma: Input should be less than or equal to 1"),
    (
        ["--set", "total_timestep=5"],
        "total_timestep: unknown parameter; did you mean total_timesteps?",
    ),
    (["--set", "learning_rate=fast"], "learning_rate: Input should be a valid number"),
    (
        ["--set", "hidden_sizes=[64,0]"],
        "hidden_sizes.1: Input should be greater than or equal to 1",
    ),
    (["--set", "ent_coef=banana"], 'ent_coef: must be "auto" or a positive number'),
    (["--set", "target_entropy=.inf"], 'target_entropy: must be "auto" or a finite number'),
    (
        ["--set", "matmul_precision=fp8"],
        "matmul_precision: Input should be 'auto', 'bf16' or 'ieee'",
    ),
    (["--set", "seed=-1"], "seed: Input should be greater than or equal to 0"),
    (["--set", "buffer_size=1000000000000"], "buffer_size: Input should be less than or equal to"),
    (
        ["--set", "total_timesteps=1000", "checkpoint_every=5000"],
        "checkpoint_every (5000) is more than total_timesteps (1000)",
    ),
    (
        ["--set", "total_timesteps=100", "learning_starts=100"],
        "learning_starts (100) is not below total_timesteps (100)",
    ),
    (["--set", "novalue"], "override 'novalue' is not of the form key=value"),
]


@pytest.mark.parametrize(("arguments", "message"), CLI_REFUSALS)
def test_a_bad_override_is_one_line_naming_the_field(capsys, arguments, message) -> None:
    assert main(["train", *arguments]) == 2
    out = capsys.readouterr().err
    assert message in " ".join(out.split())  # rich wraps long lines
    assert "Traceback" not in out


def test_a_config_file_is_held_to_the_same_rules(tmp_path, capsys) -> None:
    config = tmp_path / "sac.yaml"
    config.write_text("total_timestep: 5\nlearning_rate: -1\n")
    assert main(["train", "--config", str(config)]) == 2
    out = " ".join(capsys.readouterr().err.split())
    assert "total_timestep: unknown parameter; did you mean total_timesteps?" in out
    assert "learning_rate: Input should be greater than 0 (given -1)" in out
