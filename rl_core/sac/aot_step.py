"""The gradient step compiled ahead of time by AOTInductor: built once per machine and shape
in a child process, cached on disk, and run by the training process from a shared library.

Why ahead of time: `torch.compile` in the training process imports inductor's code
generators, sympy and the rest of the compiler (about 700 modules and 100 MiB) and keeps them
for the whole run. Here a child process exports `sac_step.gradient_step` (`torch.export`) and
compiles it into a library (`aoti_compile_and_package`); the training process only loads
that library through torch's C++ package loader and imports nothing a TorchScript run does
not. The package is cached under `cache_dir()`, keyed by everything the compiled code
depends on, so a machine compiles each step shape once, and every later run (a nightly
retrain, another seed) starts at once.

The compiled step mutates its inputs in place as the Python function does (parameters, Adam
moments and step counts, Polyak targets), and draws torch's own random numbers
(`fallback_random`), so it replays the same noise as the TorchScript step.

    python -m rl_core.sac.aot_step SPEC_FILE PACKAGE_PATH     (the child; not for users)
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rl_core.common import cpu
from rl_core.sac import sac_step, step_state
from rl_core.sac.buffer import Batch
from rl_core.sac.sac_step import StepSettings
from rl_core.sac.step_state import FlatLayout, StepState

log = logging.getLogger(__name__)

INDUCTOR_OPTIONS = {"fallback_random": True}
PACKAGE_MODEL = "model"


class StepLayout(NamedTuple):
    """What the compiled library does not take as tensors: where they lie in its flat input
    list (rl_core/sac/step_state.py), and the settings compiled in."""

    flat: FlatLayout
    settings: StepSettings

    @classmethod
    def of(cls, state: StepState, settings: StepSettings) -> StepLayout:
        """The layout of the library that runs this state with these settings."""
        return cls(step_state.flat_layout(state), settings)


class ExportableStep(nn.Module):
    """`gradient_step` over the flat tensor list, for `torch.export` (fixed numbers inside)."""

    def __init__(self, layout: StepLayout) -> None:
        super().__init__()
        self.layout = layout

    def forward(self, *tensors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, state = step_state.unflatten(tensors, self.layout.flat)
        return sac_step.gradient_step(batch, state, self.layout.settings)


CACHE_ENV = "RLOPS_CACHE_DIR"


def cache_dir() -> Path:
    """Where compiled steps are kept and loaded from: `$RLOPS_CACHE_DIR/aot-steps`, else
    `~/.cache/rlops/aot-steps` (under `XDG_CACHE_HOME` when set), missing folders created
    private (0700).

    A package there is native code the training process runs, so a cache another user could
    write into is never read: if the cache root or its `aot-steps` folder is not owned by this
    user or is writable by group or others, this process warns, naming the folder and why, and
    compiles into a private temporary folder of its own instead (a slower first update, never
    someone else's code; removed at exit)."""
    root = Path(
        os.environ.get(CACHE_ENV)
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "rlops")
    )
    for checked in (root, root / "aot-steps"):  # nothing is created in an unsafe root
        _make_private(checked)
        reason = _unsafe_because(checked)
        if reason:
            private = _private_cache(checked)
            log.warning(
                "the compiled-step cache %s is not safe to load native code from (%s); this "
                "process compiles into %s instead and loads nothing from %s. Give it to this "
                "user with mode 0700, or point %s at a folder of your own",
                checked,
                reason,
                private,
                checked,
                CACHE_ENV,
            )
            return private
    return checked


def _make_private(folder: Path) -> None:
    """Create `folder` and its missing parents with mode 0700 (`mkdir -p` would leave the
    parents to the umask, 0755 by default)."""
    for path in reversed([folder, *folder.parents]):
        if not path.exists():
            path.mkdir(mode=0o700, exist_ok=True)


def _unsafe_because(folder: Path) -> str | None:
    """Why another user could put files in `folder`, or None when only this user can."""
    status = folder.stat()
    if status.st_uid != os.geteuid():
        return f"owned by uid {status.st_uid}, not by this user (uid {os.geteuid()})"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(status.st_mode):04o})"
    return None


@functools.cache
def _private_cache(unsafe: Path) -> Path:
    """A fresh private folder (0700) standing in for `unsafe` for the rest of this process."""
    private = Path(tempfile.mkdtemp(prefix="rlops-aot-steps-"))
    atexit.register(shutil.rmtree, private, ignore_errors=True)
    return private


def package_path(layout: StepLayout, inputs: list[Tensor]) -> Path:
    """The cached package for this step: its name hashes everything the compiled code
    depends on (the step's source, torch, the CPU's kernel flags, the thread count the loops
    were generated for, the tensors' shapes, dtypes and strides, the compiled-in numbers)."""
    sources = [Path(module.__file__).read_bytes() for module in (sac_step, step_state)]
    sources.append(Path(__file__).read_bytes())
    identity = {
        "torch": torch.__version__,
        "cpu_flags": cpu.kernel_flags(),
        "cpu_capability": cpu.capability(),
        "threads": torch.get_num_threads(),
        "layout": layout,
        "inputs": [(t.shape, str(t.dtype), t.stride()) for t in inputs],
        "inductor": INDUCTOR_OPTIONS,
    }
    digest = hashlib.sha256(json.dumps(identity, default=list).encode())
    for source in sources:
        digest.update(source)
    return cache_dir() / f"sac-step-{digest.hexdigest()[:24]}.pt2"


def build(layout: StepLayout, inputs: list[Tensor], path: Path) -> None:
    """Compile the step into `path` in a child process (its memory and its dynamo and
    inductor imports end with it); the package appears whole or not at all."""
    log.info("compiling the training step with inductor, once for this machine and shape")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        spec = Path(scratch, "spec.pt")
        torch.save({"layout": layout, "inputs": inputs, "threads": torch.get_num_threads()}, spec)
        done = subprocess.run(
            [sys.executable, "-m", "rl_core.sac.aot_step", str(spec), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"compiling the training step with AOTInductor failed (step_compiler=inductor; "
            f"step_compiler=torchscript needs no C++ compiler):\n{done.stderr[-3000:]}"
        )
    log.info("compiled in %.0f s; cached as %s", time.perf_counter() - started, path)


class CompiledStep:
    """A loaded package, called like `sac_step.gradient_step`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Private, but the public loader (torch._inductor.aoti_load_package) imports inductor.
        self._runner = torch._C._aoti.AOTIModelPackageLoader(str(path), PACKAGE_MODEL, False, 1, -1)

    def __call__(
        self, batch: Batch, state: StepState, settings: StepSettings
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step; `settings` are compiled in (the package's name hashes them)."""
        critic_loss, actor_loss, alpha = self._runner.run(step_state.flatten(batch, state))
        return critic_loss, actor_loss, alpha


@functools.cache
def _load(path: Path) -> CompiledStep:
    return CompiledStep(path)


def compiled_step(batch: Batch, state: StepState, settings: StepSettings) -> CompiledStep:
    """The step for these inputs: from the cache, else compiled now (once per machine)."""
    layout, inputs = StepLayout.of(state, settings), step_state.flatten(batch, state)
    path = package_path(layout, inputs)
    if not path.exists():
        build(layout, inputs, path)
    return _load(path)


def _compile(spec_file: Path, path: Path) -> None:
    """The child's work: export the step on the saved example inputs and package it."""
    import torch._inductor

    spec = torch.load(spec_file, weights_only=False)  # written by `build` a moment ago
    torch.set_num_threads(spec["threads"])  # inductor generates its loops for this count
    exported = torch.export.export(ExportableStep(spec["layout"]), tuple(spec["inputs"]))
    partial = path.with_name(f".{path.stem}.{os.getpid()}.pt2")  # must end in .pt2
    torch._inductor.aoti_compile_and_package(
        exported, package_path=str(partial), inductor_configs=INDUCTOR_OPTIONS
    )
    partial.replace(path)


if __name__ == "__main__":
    _compile(Path(sys.argv[1]), Path(sys.argv[2]))
