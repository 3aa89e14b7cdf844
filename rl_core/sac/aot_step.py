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

A first compile takes 13-20 s, so a training run does not wait for it: `BackgroundCompile`
starts the niced child before the first env step and the run trains on TorchScript (the same
function on the same tensors) until the package exists, then switches
(rl_core/run/training.py records the step). One process per machine compiles a package: the
child holds an exclusive `fcntl` lock on a file beside it, and a process that finds the lock
held trains on TorchScript and looks every `WAITER_POLL_EVERY` polls for the package.
`build`, which waits (a run resumed past its switch, an agent used outside training),
takes the same lock.

    python -m rl_core.sac.aot_step SPEC_FILE PACKAGE_PATH     (the child; not for users)
"""

from __future__ import annotations

import atexit
import fcntl
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
import weakref
from pathlib import Path
from typing import Literal, NamedTuple

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
    inductor imports end with it), waiting for the package's lock first: when the process
    that held it leaves the package, nothing is compiled again. The package appears whole or
    not at all."""
    lock = _locked(path, wait=True)
    try:
        if path.exists():
            return
        log.info("compiling the training step with inductor, once for this machine and shape")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            spec = (layout, inputs, torch.get_num_threads())
            returncode = _start_child(spec, path, Path(scratch)).wait()
            errors = _errors(Path(scratch))
    finally:
        os.close(lock)
    if returncode != 0:
        raise RuntimeError(
            f"compiling the training step with AOTInductor failed (step_compiler=inductor; "
            f"step_compiler=torchscript needs no C++ compiler):\n{errors}"
        )
    log.info("compiled in %.0f s; cached as %s", time.perf_counter() - started, path)


LOCK_SUFFIX = ".lock"
BACKGROUND_NICENESS = 10
"""The background child's nice value: training keeps its cores' priority (on two cores it
trains on one thread meanwhile, leaving the compile the other). Not 19: on a box busy with
other runs, 19 left the compile 2% of a core (minutes of TorchScript); 10 leaves it ~10%."""
WAITER_POLL_EVERY = 200
"""Polls between two looks (a stat and a lock attempt) at another process's compile."""
CompileStatus = Literal["running", "ready", "failed"]


def _locked(path: Path, wait: bool) -> int | None:
    """An open file descriptor holding the exclusive lock of `path`'s package (a file beside
    it, in the private cache), or None when another process holds it and `wait` is false."""
    lock = os.open(path.with_name(path.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return None
    return lock


def _start_child(
    spec: tuple[StepLayout, list[Tensor], int], path: Path, scratch: Path, lock: int | None = None
) -> subprocess.Popen[bytes]:
    """The child compiling the package of `spec` (layout, example inputs, thread count), its
    spec file and stderr in `scratch`; it inherits `lock` (so the lock lives as long as the
    compile, even past this process)."""
    layout, inputs, threads = spec
    torch.save({"layout": layout, "inputs": inputs, "threads": threads}, scratch / "spec.pt")
    with (scratch / "stderr.txt").open("wb") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "rl_core.sac.aot_step", str(scratch / "spec.pt"), str(path)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            pass_fds=() if lock is None else (lock,),
        )


def _errors(scratch: Path) -> str:
    """The end of the child's stderr."""
    return (scratch / "stderr.txt").read_text(errors="replace")[-3000:]


class BackgroundCompile:
    """The package of one step shape being compiled while the caller trains on TorchScript:
    by a niced child of this process, or by whichever process holds the package's lock."""

    def __init__(self, layout: StepLayout, inputs: list[Tensor], path: Path) -> None:
        self.path = path
        self.errors = ""
        """The end of the failed child's stderr, once the status is "failed"."""
        self._spec = (layout, inputs, torch.get_num_threads())  # the caller may change it later
        self._child: subprocess.Popen[bytes] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._stop: weakref.finalize | None = None
        self._status: CompileStatus = "running"
        self._polls = 0
        self._look()

    @property
    def compiling_here(self) -> bool:
        """Whether a child of this process compiles the package (else another process does,
        or it was cached)."""
        return self._child is not None

    def poll(self) -> CompileStatus:
        """Whether the package is ready: a `Popen.poll` while this process's child compiles,
        a look at the cache every `WAITER_POLL_EVERY` calls while another process does."""
        if self._status != "running" or self._child is not None:
            return self._look()
        self._polls += 1
        return "running" if self._polls % WAITER_POLL_EVERY else self._look()

    def wait(self) -> CompileStatus:
        """Block until the package is ready or its compile failed."""
        while self._look() == "running":
            if self._child is not None:
                self._child.wait()
            else:  # another process compiles, and releases the lock when it is done
                os.close(_locked(self.path, wait=True))  # type: ignore[arg-type]
        return self._status

    def close(self) -> None:
        """Stop the child if it still runs (a run that ends first does not wait for it) and
        remove what it wrote: the cache keeps nothing half-written."""
        if self._stop is not None:
            self._stop()

    def _look(self) -> CompileStatus:
        if self._status == "running":
            if self._child is None:
                self._start_unless_locked()
            if self._child is None:
                self._status = "ready" if self.path.exists() else "running"
            elif (returncode := self._child.poll()) is not None:
                self._finished(returncode)
        return self._status

    def _start_unless_locked(self) -> None:
        """Start the niced child unless another process holds the lock or the package exists
        (the holder compiled it, or left none: then this process compiles it)."""
        lock = _locked(self.path, wait=False)
        if lock is None:
            return
        try:
            if self.path.exists():
                return
            log.info(
                "compiling the training step with inductor in the background, once for this "
                "machine and shape; training runs the TorchScript step meanwhile"
            )
            self._scratch = tempfile.TemporaryDirectory(dir=self.path.parent)
            self._child = _start_child(self._spec, self.path, Path(self._scratch.name), lock)
        finally:
            os.close(lock)  # the child's copy holds it now
        os.setpriority(os.PRIO_PROCESS, self._child.pid, BACKGROUND_NICENESS)
        self._stop = weakref.finalize(self, _stop_child, self._child, self._scratch, self.path)

    def _finished(self, returncode: int) -> None:
        if returncode == 0 and self.path.exists():
            self._status = "ready"
        else:
            errors = _errors(Path(self._scratch.name))  # type: ignore[union-attr]
            self.errors = errors or f"the compiling child exited with {returncode}"
            self._status = "failed"
        self.close()


def _stop_child(
    child: subprocess.Popen[bytes], scratch: tempfile.TemporaryDirectory[str], path: Path
) -> None:
    if child.poll() is None:
        child.terminate()
        child.wait()
        path.with_name(f".{path.stem}.{child.pid}.pt2").unlink(missing_ok=True)
    scratch.cleanup()


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
def load(path: Path) -> CompiledStep:
    """The package at `path`, loaded once per process."""
    return CompiledStep(path)


def compiled_step(batch: Batch, state: StepState, settings: StepSettings) -> CompiledStep:
    """The step for these inputs: from the cache, else compiled now (once per machine)."""
    layout, inputs = StepLayout.of(state, settings), step_state.flatten(batch, state)
    path = package_path(layout, inputs)
    if not path.exists():
        build(layout, inputs, path)
    return load(path)


def background_compile(batch: Batch, state: StepState, settings: StepSettings) -> BackgroundCompile:
    """The step for inputs shaped as these, compiled while training goes on (at once ready
    when cached). Only shapes, dtypes and strides matter: `batch` may be zeros."""
    layout, inputs = StepLayout.of(state, settings), step_state.flatten(batch, state)
    return BackgroundCompile(layout, inputs, package_path(layout, inputs))


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
