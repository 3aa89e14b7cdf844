"""Every `rlops` command answers bad input with one line on stderr and exit 2, never a traceback.

Each case runs the real CLI in a fresh process (`python -m rl_core`), as a user would: the
files it is pointed at are real files on disk (a missing one, a truncated or foreign one), the
registry is a real MLflow store, and "MLflow unreachable" is a closed port on 127.0.0.1. None
trains: every case fails before the first step.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from rl_core.policy.checkpoint import save_actor
from rl_core.run.cli import main
from rl_core.sac.networks import Actor

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """`rlops <argv>` in a folder of prepared files; `{dir}` in argv and env is that folder."""

    argv: tuple[str, ...]
    word: str
    """What the one line must say: it names the problem (and usually the input)."""
    env: dict[str, str] = field(default_factory=dict)
    registry: bool = False
    """Run against a real MLflow store holding model `x` (version 1, no alias)."""


UNREACHABLE = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}", "RLOPS_MLFLOW_WAIT_SECONDS": "0"}
"""A closed port; no wait, so the failure is the one line (the wait's progress lines and
its bound are tests/unit/test_tracking_server_wait.py's)."""

CASES = {
    "unknown env id": Case(("train", "--set", "env_id=NoSuchEnv-v0"), "unknown env id"),
    "discrete actions": Case(
        ("train", "--set", "env_id=CartPole-v1"), "action space Discrete(2); SAC needs"
    ),
    "env package not installed": Case(
        ("train", "--set", "env_packages=[rlops_no_such_pkg]"),
        "cannot import 'rlops_no_such_pkg'",
        env={"RLOPS_ALLOWED_ENV_MODULES": "rlops_no_such_pkg"},
    ),
    "env package not allowed": Case(
        ("train", "--set", "env_packages=[os]"), "module 'os' is not allowed"
    ),
    "config file missing": Case(
        ("train", "--config", "{dir}/missing.yaml"), "missing.yaml: No such file"
    ),
    "resume from a missing file": Case(
        ("train", "--resume", "{dir}/missing.pt"), "missing.pt: no such file"
    ),
    "resume from an actor file": Case(
        ("train", "--resume", "{dir}/actor.pt"), "actor.pt: not an rlops checkpoint"
    ),
    "resume from a truncated file": Case(
        ("train", "--resume", "{dir}/truncated.pt"), "truncated.pt: not an rlops training"
    ),
    "output folder under a file": Case(
        ("train", "--out", "{dir}/actor.pt/run"), "cannot make this folder"
    ),
    "evaluate a truncated file": Case(
        ("evaluate", "{dir}/truncated.pt"), "truncated.pt: not an rlops actor file"
    ),
    "export a foreign file": Case(
        ("export", "{dir}/notes.txt", "--out", "{dir}/policy"),
        "notes.txt: not an rlops actor file",
    ),
    "bench a foreign policy folder": Case(
        ("bench", "{dir}/broken-policy"), "broken-policy: its MLmodel holds a str"
    ),
    "video of an empty file": Case(("video", "{dir}/empty.pt"), "empty.pt: not an rlops actor"),
    "registry alias not set": Case(
        ("evaluate", "models:/x@champion"), "models:/x@champion:", registry=True
    ),
    "reproduce a model that does not exist": Case(
        ("reproduce", "models:/nope/1"), "models:/nope/1: Model Version", registry=True
    ),
    "reproduce without MLflow": Case(("reproduce", "abc"), "set MLFLOW_TRACKING_URI"),
    "train, MLflow unreachable": Case(("train",), "did not answer", env=UNREACHABLE),
    "evaluate, MLflow unreachable": Case(
        ("evaluate", "models:/x/1"), "did not answer", env=UNREACHABLE
    ),
    "reproduce, MLflow unreachable": Case(("reproduce", "abc"), "did not answer", env=UNREACHABLE),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the cases point the CLI at."""
    folder = tmp_path_factory.mktemp("cli-inputs")
    actor = Actor(3, 1, (8, 8), torch.tensor([-2.0]), torch.tensor([2.0]))
    whole = save_actor(folder / "actor.pt", actor, "Pendulum-v1").read_bytes()
    (folder / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.pt").write_bytes(b"")
    (folder / "notes.txt").write_text("not a policy\n")
    (folder / "broken-policy").mkdir()
    (folder / "broken-policy" / "MLmodel").write_text("just a sentence\n")
    return folder


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def registry(mlflow_store: str) -> str:
    """A real MLflow store with registered model `x` version 1 and no alias."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.create_registered_model("x")
    client.create_model_version("x", "file:///nowhere", run_id=None)
    return mlflow_store


def run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rl_core", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    request: pytest.FixtureRequest, name: str, inputs: Path, closed_port: int, tmp_path: Path
) -> None:
    case = CASES[name]
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(REPO)}
    if case.registry:
        env["MLFLOW_TRACKING_URI"] = request.getfixturevalue("registry")
    env |= {key: value.format(port=closed_port) for key, value in case.env.items()}
    argv = [part.format(dir=inputs) for part in case.argv]
    if argv[0] == "train" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "run")]

    done = run_cli(argv, env, tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ")
    assert case.word in done.stderr


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception of no known kind is rlops' own fault: the CLI must not hide it."""

    def broken(args: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr("rl_core.run.cli.cmd_evaluate", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["evaluate", "anything"])


def test_the_rlops_entry_point_is_the_same_cli(inputs: Path, tmp_path: Path) -> None:
    """The installed `rlops` script answers as `python -m rl_core` does."""
    rlops = shutil.which("rlops", path=str(Path(sys.executable).parent))
    assert rlops is not None, "the rlops entry point is not installed in this environment"
    done = subprocess.run(
        [rlops, "evaluate", str(inputs / "truncated.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
