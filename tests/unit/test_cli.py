import json
import subprocess
import sys

import pytest

from rl_core.cli import main


@pytest.mark.parametrize("command", ["train", "evaluate", "export", "bench"])
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

    assert main(["export", str(checkpoint), "--out", str(tmp_path / "actor.pt")]) == 0
    assert (tmp_path / "actor.pt").exists()
    assert "max |Δaction|" in capsys.readouterr().out

    assert main(["bench", str(checkpoint), "--calls", "30", "--batch-sizes", "1,8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["batch_size"] for r in rows] == [1, 8]


def test_bad_override_is_a_clear_error(capsys) -> None:
    assert main(["train", "--set", "gamma=2"]) == 2
    assert "gamma" in capsys.readouterr().out
