"""`pip install .` must give a working `rlops` CLI: no Airflow, and nothing it imports beyond the
dependencies pyproject.toml declares for the library (the extras are not installed then)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# Runs the `rlops` entry point of pyproject.toml as in a venv made by `pip install .`: every
# installed top-level module outside the library's declared dependencies (Airflow, the server's
# and the dev tools' packages) is unimportable, as it would be absent there.
CHILD = r"""
import importlib, json, sys

absent = set(json.loads(sys.argv[1]))

class OnlyDeclared:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in absent:
            raise ModuleNotFoundError(f"No module named {name!r} (not a declared dependency)")
        return None

sys.meta_path.insert(0, OnlyDeclared())
module, _, function = sys.argv[2].partition(":")
sys.exit(getattr(importlib.import_module(module), function)(sys.argv[3:]))
"""


def _name(requirement: str) -> str:
    return re.split(r"[\s\[=<>!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements: list[str]) -> set[str]:
    """The installed distributions these requirements pull in, transitively (no extras)."""
    seen: set[str] = set()
    todo = [_name(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue  # a dependency for another platform or Python
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def _absent_modules() -> set[str]:
    """Top-level modules of installed distributions that `pip install .` would not install."""
    declared = _closure(PYPROJECT["project"]["dependencies"])
    return {
        module
        for module, owners in packages_distributions().items()
        if not {_name(owner) for owner in owners} & declared
    } - {"rl_core"}


def _run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    entry = PYPROJECT["project"]["scripts"]["rlops"]
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(sorted(_absent_modules())), entry, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)},
        timeout=300,
    )


def test_the_blocked_modules_include_airflow_and_the_extras() -> None:
    absent = _absent_modules()
    assert {"airflow", "celery", "optuna", "pytest"} <= absent
    assert not {"torch", "gymnasium", "rich_argparse", "mlflow"} & absent


def test_cli_help_runs_without_airflow(tmp_path: Path) -> None:
    done = _run_cli(tmp_path, "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "train" in done.stdout


def test_a_short_training_runs_on_the_declared_dependencies(tmp_path: Path) -> None:
    done = _run_cli(
        tmp_path,
        "train",
        "--set",
        "total_timesteps=150",
        "learning_starts=100",
        "batch_size=32",
        "checkpoint_every=0",
        "--out",
        str(tmp_path / "run"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run" / "actor.pt").is_file()
