"""No cold start (rl_core/sac/aot_step.py `BackgroundCompile`, rl_core/run/training.py): an
inductor run whose step is not cached trains on TorchScript's step from its first update while a
niced child compiles, switches when the package is ready, records the env step of the switch,
and replays or resumes it bit for bit. One process per machine compiles a package (a lock beside
it); a failed compile leaves TorchScript running, with one warning.

The module compiles one package, once (`cold_run`); the other tests copy it where they need it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from rl_core.common.config import SACConfig
from rl_core.common.tracking import MlflowTracker
from rl_core.policy.checkpoint import load_checkpoint
from rl_core.run import lineage
from rl_core.run.reproduce import replayed
from rl_core.run.training import TrainResult, train
from rl_core.sac import aot_step
from rl_core.sac.agent import SAC
from rl_core.sac.step_compiler import scripted_step

CONFIG = SACConfig(
    total_timesteps=600,
    learning_starts=100,
    hidden_sizes=(16, 16),
    batch_size=16,
    step_compiler="inductor",
    torch_threads=2,
    eval_every=200,  # Pendulum's episodes end every 200 steps: evaluations at 200 and 400
    progress_eval_seeds=(2000,),
)
FORCED_SWITCH = 150
"""The cold run switches here, waiting for its compile if need be: a time-free assertion."""
TEST_NICENESS = 1
"""The cold run's child is niced this much, not 19: at 19 it would wait for the other busy
test workers to leave it a core."""


def _params(result: TrainResult) -> list[torch.Tensor]:
    agent = result.agent
    modules = (agent.actor, agent.critic, agent.critic_target)
    return [t.detach().clone() for m in modules for t in m.state_dict().values()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class _Ran:
    """Which step object ran each update, whether a child compiled meanwhile (and its nice
    value), and on how many torch threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps: list[tuple[str, bool]] = []
        self.niceness: list[int] = []
        self.threads: list[tuple[str, int]] = []
        update = SAC.update

        def recorded(agent: SAC, batch: object) -> object:
            stats = update(agent, batch)
            step = agent._step
            kind = "torchscript" if step is scripted_step() else type(step).__name__
            child = agent._background._child if agent._background else None
            running = child is not None and child.poll() is None
            if running:
                self.niceness.append(os.getpriority(os.PRIO_PROCESS, child.pid))
            self.steps.append((kind, running))
            self.threads.append((kind, torch.get_num_threads()))
            return stats

        monkeypatch.setattr(SAC, "update", recorded)

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.steps]


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, _Ran, Path]:
    """A run on a fresh cache (returned), switching at FORCED_SWITCH: the module's package."""
    cache, out = tmp_path_factory.mktemp("cold-cache"), tmp_path_factory.mktemp("cold-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLOPS_CACHE_DIR", str(cache))
        patch.setattr(aot_step, "BACKGROUND_NICENESS", TEST_NICENESS)
        ran = _Ran(patch)
        result = train(
            CONFIG,
            show_progress=False,
            switch_at=FORCED_SWITCH,
            checkpoint_path=out / "checkpoint.pt",
        )
    return result, ran, cache


def test_a_cold_run_trains_on_torchscript_while_it_compiles_then_switches(cold_run) -> None:
    result, ran, cache = cold_run
    updates = CONFIG.total_timesteps - CONFIG.learning_starts
    before = FORCED_SWITCH - CONFIG.learning_starts - 1  # updates at steps 101..149
    assert ran.kinds() == ["torchscript"] * before + ["CompiledStep"] * (updates - before)
    assert ran.steps[0] == ("torchscript", True)  # the first update ran while the child compiled
    assert set(ran.niceness) == {TEST_NICENESS}
    # TorchScript leaves the compile a core; the compiled step gets the config's threads.
    assert set(ran.threads) == {("torchscript", 1), ("CompiledStep", CONFIG.torch_threads)}
    assert result.switch_step == FORCED_SWITCH
    assert load_checkpoint(result.checkpoint_path)["step_switch"] == FORCED_SWITCH
    package = result.agent._step.path
    assert package.parent == cache / "aot-steps"
    leftovers = [p.name for p in package.parent.iterdir() if p.name != package.name]
    assert leftovers == [package.name + aot_step.LOCK_SUFFIX]  # no scratch, no partial package


def _hold_lock(package: Path) -> int:
    lock = os.open(package.with_name(package.name + aot_step.LOCK_SUFFIX), os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


@pytest.fixture(scope="module")
def waited_run(
    cold_run: tuple[TrainResult, _Ran, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainResult, _Ran]:
    """A run that finds the package's lock held by "another process" (this test), trains on
    TorchScript, and sees the package appear at its first evaluation (env step 200)."""
    package = cold_run[0].agent._step.path
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLOPS_CACHE_DIR", str(tmp_path_factory.mktemp("waiting-cache")))
        patch.setattr(aot_step, "WAITER_POLL_EVERY", 1)
        mine = aot_step.cache_dir() / package.name
        lock = _hold_lock(mine)

        def no_compile(*args: object, **kwargs: object) -> None:
            raise AssertionError("a process that finds the lock held started a compile")

        patch.setattr(aot_step, "_start_child", no_compile)

        def package_appears(step: int, mean_return: float) -> None:
            if not mine.exists():
                shutil.copyfile(package, mine)
                os.close(lock)

        ran = _Ran(patch)
        result = train(CONFIG, show_progress=False, on_evaluation=package_appears)
    return result, ran


def test_a_held_lock_means_torchscript_until_the_other_process_leaves_the_package(
    waited_run,
) -> None:
    result, ran = waited_run
    updates = CONFIG.total_timesteps - CONFIG.learning_starts
    # Updates at steps 101..200 ran TorchScript; the package appeared after step 200's.
    assert ran.kinds() == ["torchscript"] * 100 + ["CompiledStep"] * (updates - 100)
    assert result.switch_step == 201


def test_a_replay_or_a_resume_at_the_recorded_switch_is_bit_identical(waited_run, tmp_path) -> None:
    original, _ = waited_run
    replayed = train(CONFIG, show_progress=False, switch_at=original.switch_step)
    assert replayed.switch_step == original.switch_step
    assert _same(_params(replayed), _params(original))

    first_part = tmp_path / "first" / "checkpoint.pt"
    first_part.parent.mkdir()
    shorter = CONFIG.model_copy(update={"total_timesteps": 400})
    train(shorter, show_progress=False, switch_at=original.switch_step, checkpoint_path=first_part)
    resumed = train(CONFIG, show_progress=False, resume_from=first_part)
    assert resumed.switch_step == original.switch_step  # from the checkpoint, not from 401
    assert _same(_params(resumed), _params(original))
    # Another switch step is another run: what the record is for.
    elsewhere = train(CONFIG, show_progress=False, switch_at=original.switch_step + 100)
    assert not _same(_params(elsewhere), _params(original))


def test_a_failed_compile_trains_on_torchscript_with_one_warning_and_says_so(
    mlflow_store, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("RLOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setattr(aot_step, "BACKGROUND_NICENESS", TEST_NICENESS)
    ran = _Ran(monkeypatch)
    shorter = CONFIG.model_copy(update={"eval_every": 0})
    with caplog.at_level(logging.WARNING), MlflowTracker("cold") as tracker:
        result = train(shorter, tracker=tracker, show_progress=False, switch_at=FORCED_SWITCH)

    assert set(ran.kinds()) == {"torchscript"}
    assert result.switch_step is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "step_compiler=inductor" in warnings[0].getMessage()
    assert "TorchScript" in warnings[0].getMessage()
    tags = MlflowClient().get_run(tracker.run_id).data.tags
    assert tags["lineage.step_compiler"] == "torchscript"
    assert f"lineage.{lineage.SWITCH_STEP}" not in tags
    recorded = json.loads(
        Path(
            download_artifacts(run_id=tracker.run_id, artifact_path="lineage/lineage.json")
        ).read_text()
    )
    assert recorded["step_compiler"] == "torchscript"
    assert list((tmp_path / "cache" / "aot-steps").glob("*.pt2")) == []


def test_reproduce_replays_what_ran_from_the_lineage() -> None:
    """`rlops reproduce` trains as the original's lineage says its step ran."""
    switched = {"step_compiler": "inductor", lineage.SWITCH_STEP: 201}
    assert replayed(CONFIG, switched) == (CONFIG, 201)
    config, switch_at = replayed(CONFIG, {"step_compiler": "torchscript"})  # never compiled
    assert (config.effective_step_compiler, switch_at) == ("torchscript", None)
    assert config.model_dump(exclude={"step_compiler"}) == CONFIG.model_dump(
        exclude={"step_compiler"}
    )
    assert replayed(CONFIG, {"step_compiler": "inductor"}) == (CONFIG, 0)  # before switches
    short = CONFIG.model_copy(update={"step_compiler": "torchscript"})
    assert replayed(short, switched) == (short, None)
