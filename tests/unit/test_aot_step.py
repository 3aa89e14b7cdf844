"""The step compiled ahead of time (rl_core/sac/aot_step.py): cached per machine and shape, built
in a child process, and run by a training process that never loads dynamo."""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_core.common.config import SACConfig
from rl_core.sac import aot_step
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import Batch


def _agent(**overrides: object) -> SAC:
    config = SACConfig(
        **{"hidden_sizes": (16, 16), "step_compiler": "inductor", "batch_size": 8, **overrides}
    )
    torch.manual_seed(0)
    return SAC(config, 3, 1, -np.ones(1), np.ones(1))


def _batch(n: int = 8) -> Batch:
    return Batch(
        torch.randn(n, 3), torch.rand(n, 1), torch.randn(n), torch.randn(n, 3), torch.zeros(n)
    )


def test_a_compiled_step_is_reused_from_the_cache_not_built_again(monkeypatch) -> None:
    _agent().update(_batch())  # built (or found) once for this shape
    built: list[tuple[object, ...]] = []
    build = aot_step.build

    def recorded(*args: object) -> None:
        built.append(args)
        build(*args)

    monkeypatch.setattr(aot_step, "build", recorded)
    agent = _agent()
    stats = agent.update(_batch())
    assert built == []
    assert torch.isfinite(stats.critic_loss)
    # Another shape or another compiled-in number is another library.
    _agent(gamma=0.9).update(_batch())
    _agent().update(_batch(n=16))
    assert len(built) == 2
    assert built[0][2] != built[1][2]  # different package paths


def _modules_after_training(compiler: str) -> tuple[str, set[str]]:
    """What ran the step of a short training run in a fresh process, and the modules that
    process imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from rl_core.common.config import SACConfig
        from rl_core.run.training import train

        config = SACConfig(total_timesteps=300, learning_starts=100, hidden_sizes=(16, 16),
                           batch_size=16, step_compiler="{compiler}")
        agent = train(config, show_progress=False, switch_at=0).agent  # compiled throughout
        print(type(agent._step).__name__, " ".join(sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    step, *modules = done.stdout.strip().splitlines()[-1].split()
    return step, set(modules)


def test_the_training_process_loads_no_compiler_to_run_the_compiled_step() -> None:
    """The library is built in a child process: training with it imports nothing that
    training with TorchScript does not (torch.compile would add ~700 modules, inductor's
    code generators among them, and ~100 MiB), and neither imports dynamo, inductor or sympy
    (torch.optim.Adam would: rlops keeps Adam's state itself, rl_core/sac/adam_state.py)."""
    step, with_library = _modules_after_training("inductor")
    assert step == "CompiledStep"
    _, with_torchscript = _modules_after_training("torchscript")
    for modules in (with_library, with_torchscript):
        loaded = [n for n in modules if n.startswith(("torch._dynamo", "torch._inductor", "sympy"))]
        assert loaded == []
    extra = with_library - with_torchscript
    compiler_stack = ("torch._inductor", "torch._dynamo", "torch.export", "torch.fx", "sympy")
    assert [name for name in extra if name.startswith(compiler_stack)] == []
    assert len(extra) < 10, extra


def test_a_failed_build_says_which_compiler_and_how_to_do_without(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RLOPS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(RuntimeError, match="step_compiler=torchscript needs no C\\+\\+ compiler"):
        _agent(hidden_sizes=(8, 8)).update(_batch())
    assert list(tmp_path.rglob("*.pt2")) == []  # nothing half-written is left for a later run


@pytest.fixture
def good_package() -> Path:
    """This module's usual step package, compiled once into the session's cache."""
    agent = _agent()
    agent.update(_batch())
    return agent._step.path


@pytest.fixture
def built(monkeypatch, good_package: Path) -> list[Path]:
    """Packages "compiled" during the test: `build` copies the good package (a real compile
    takes 10-30 s; where packages are read from is what these tests are about)."""
    paths: list[Path] = []

    def copy(layout: object, inputs: object, path: Path) -> None:
        paths.append(path)
        path.write_bytes(good_package.read_bytes())

    monkeypatch.setattr(aot_step, "build", copy)
    return paths


NOBODY = pwd.getpwnam("nobody").pw_uid
UNSAFE: list[tuple[str, Callable[[Path], None], str]] = [
    ("root", lambda path: path.chmod(0o777), "writable by group or others (mode 0777)"),
    ("aot-steps", lambda path: path.chmod(0o777), "writable by group or others (mode 0777)"),
    ("aot-steps", lambda path: path.chmod(0o720), "writable by group or others (mode 0720)"),
    ("root", lambda path: os.chown(path, NOBODY, -1), f"owned by uid {NOBODY}, not by this"),
    ("aot-steps", lambda path: os.chown(path, NOBODY, -1), f"owned by uid {NOBODY}, not by"),
]


@pytest.mark.parametrize(("folder", "make_unsafe", "reason"), UNSAFE)
def test_a_cache_others_can_write_into_is_never_loaded_from(
    monkeypatch, tmp_path, caplog, good_package, built, folder, make_unsafe, reason
) -> None:
    """A package planted where this step's package belongs, in a cache folder another user
    could write to, is not loaded (it is not a package at all: loading it would raise); the
    step is compiled into a private folder instead, with a warning naming folder and reason."""
    root = tmp_path / "cache"
    (root / "aot-steps").mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    planted = root / "aot-steps" / good_package.name
    planted.write_bytes(b"native code of someone else")
    unsafe = root if folder == "root" else root / "aot-steps"
    make_unsafe(unsafe)
    monkeypatch.setenv("RLOPS_CACHE_DIR", str(root))

    with caplog.at_level(logging.WARNING, logger=aot_step.__name__):
        agent = _agent()
        stats = agent.update(_batch())

    assert torch.isfinite(stats.critic_loss)
    private = agent._step.path.parent
    assert built == [agent._step.path]
    assert not private.is_relative_to(root)
    assert (private.stat().st_uid, oct(private.stat().st_mode & 0o777)) == (os.geteuid(), "0o700")
    assert planted.read_bytes() == b"native code of someone else"
    assert f"the compiled-step cache {unsafe} is not safe to load native code from" in caplog.text
    assert reason in caplog.text


def test_a_private_cache_of_ours_is_created_0700_and_loaded_from(
    monkeypatch, tmp_path, built
) -> None:
    root = tmp_path / "new" / "cache"
    monkeypatch.setenv("RLOPS_CACHE_DIR", str(root))
    previous = os.umask(0o022)  # what mkdir -p would create 0755 with
    try:
        first = _agent()
        first.update(_batch())
    finally:
        os.umask(previous)
    folders = (tmp_path / "new", root, root / "aot-steps")
    assert [oct(folder.stat().st_mode & 0o777) for folder in folders] == ["0o700"] * 3
    assert built == [root / "aot-steps" / built[0].name]
    second = _agent()
    second.update(_batch())
    assert second._step.path == built[0]  # loaded from our cache, not built again
    assert len(built) == 1


def test_a_blocking_build_waits_for_the_lock_and_compiles_nothing_the_holder_left(
    monkeypatch, tmp_path, good_package
) -> None:
    """One compile per machine also for the first update that compiles and waits: while
    another process holds the package's lock, `build` waits, then finds its package."""
    monkeypatch.setenv("RLOPS_CACHE_DIR", str(tmp_path))
    target = aot_step.cache_dir() / good_package.name
    lock = os.open(target.with_name(target.name + aot_step.LOCK_SUFFIX), os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)

    def no_compile(*args: object) -> None:
        raise AssertionError("build compiled a package the lock holder left")

    monkeypatch.setattr(aot_step, "_start_child", no_compile)
    waiting = threading.Thread(target=aot_step.build, args=(None, None, target))
    waiting.start()
    waiting.join(timeout=1.0)
    assert waiting.is_alive()  # waits for the holder
    target.write_bytes(good_package.read_bytes())
    os.close(lock)
    waiting.join(timeout=30)
    assert not waiting.is_alive()
