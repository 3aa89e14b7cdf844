"""Where a model came from: code version, recipe, library versions, seeds and machine.

`collect()` is called by every tracked training run, so lineage needs no user code; its
result is logged as `lineage.*` run tags, `lineage/lineage.json` and `lineage/pip-freeze.txt`.
`reproduce` compares it with the present to say what could make a re-run differ.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from rl_core.common import cpu
from rl_core.common.config import SACConfig
from rl_core.envs.spec import env_spec_version

GIT_SHA_ENV = "RLOPS_GIT_SHA"
"""Set in images built without a .git folder (the Dockerfile passes it as a build arg)."""
REPO_ROOT = Path(__file__).resolve().parents[2]
SWITCH_STEP = "step_compiler_switch_step"
"""Lineage key of an inductor run: the env step from whose update on inductor's compiled step
ran; TorchScript's ran before it while the step compiled in the background (a fresh cache),
and the two round differently, so a replay switches at the same step."""
TRACKED_PACKAGES = ("torch", "gymnasium", "numpy", "mlflow", "apache-airflow")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_sha() -> str:
    """The commit of the rlops checkout, `$RLOPS_GIT_SHA`, or "unknown"."""
    if os.environ.get(GIT_SHA_ENV):
        return os.environ[GIT_SHA_ENV]
    sha = _git("rev-parse", "HEAD")
    return sha.strip() if sha else "unknown"


def git_dirty() -> bool | None:
    """Whether tracked files differ from the commit (None when not a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status.strip())


def package_versions() -> dict[str, str]:
    """Python and the libraries that decide a run's numbers."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def pip_freeze() -> str:
    """Every installed distribution as `name==version`, sorted (no pip subprocess)."""
    pins = {f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()}
    return "\n".join(sorted(pins, key=str.lower)) + "\n"


def requirements_sha256() -> str:
    path = REPO_ROOT / "requirements.txt"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "unknown"


def numeric_fingerprint(config: SACConfig) -> dict[str, object]:
    """What must match for two runs of `config` to give bit-identical numbers."""
    versions = package_versions()
    return {
        "cpu": cpu.model(),
        "cpu_flags": list(cpu.kernel_flags()),
        "cpu_capability": cpu.capability(),
        "torch": versions["torch"],
        "numpy": versions["numpy"],
        "gymnasium": versions["gymnasium"],
        "torch_threads": config.torch_threads,
        "matmul_precision": config.effective_matmul_precision,
        "step_compiler": config.effective_step_compiler,
    }


def step_compiler_ran(planned: str, switch_step: int | None) -> dict[str, object]:
    """What ran the gradient step, for the lineage: a run planned on inductor ran TorchScript
    until `switch_step`, and throughout when the compiled step never came (failed to compile,
    or the run ended first)."""
    if planned != "inductor":
        return {"step_compiler": planned}
    if switch_step is None:
        return {"step_compiler": "torchscript"}
    return {"step_compiler": "inductor", SWITCH_STEP: switch_step}


def collect(config: SACConfig) -> dict[str, Any]:
    """The lineage of a training run with `config`, as flat JSON-able values."""
    return {
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "config_hash": config.config_hash(),
        **package_versions(),
        "requirements_sha256": requirements_sha256(),
        "env_id": config.env_id,
        "env_packages": list(config.env_packages),
        "env_kwargs": dict(config.env_kwargs),
        "env_spec_version": env_spec_version(config.env_id),
        "seed": config.seed,
        "eval_seeds": list(config.eval_seeds),
        "cpu": cpu.model(),
        "cpu_flags": list(cpu.kernel_flags()),
        "cpu_capability": cpu.capability(),
        "matmul_precision": config.effective_matmul_precision,
        "step_compiler": config.effective_step_compiler,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "executable": sys.executable,
    }
