"""The SAC training loop: collect a step, store it, update, log, checkpoint, repeat.

One seed drives everything (torch init and action noise, warm-up actions, replay sampling,
env resets), and a checkpoint restores all of it, so a resumed run continues bit-for-bit.

An inductor run whose step is not compiled yet does not wait for it: the compile starts in the
background before the first env step, and until it is ready the updates run TorchScript's step
on one thread, leaving the compile a core (two torch threads sharing two cores with a busy
process collapse to a fraction of their speed). The env step of the switch is recorded
(checkpoint, lineage tag `step_compiler_switch_step`) because the two steps round differently:
a resumed run past it compiles before its first update, and a replay (`switch_at`) switches at
the same step.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from rl_core.common.artifact_names import (
    ACTOR_ARTIFACT_DIR,
    ACTOR_FILE,
    BEST_ACTOR_FILE,
    CHECKPOINT_ARTIFACT_DIR,
    CHECKPOINT_FILE,
    CONFIG_ARTIFACT,
)
from rl_core.common.config import SACConfig, stored_config
from rl_core.common.process_settings import tuned_for_training
from rl_core.common.tracking import NullTracker, Tracker
from rl_core.envs.spec import make_env, space_dims, to_env_action
from rl_core.evaluation.plots import reward_curve_png
from rl_core.policy.best_policy import PROGRESS_EVAL_METRIC, BestPolicy
from rl_core.policy.checkpoint import DiskFullError, load_checkpoint, save_actor, save_checkpoint
from rl_core.run import lineage
from rl_core.sac.agent import SAC, UpdateStats
from rl_core.sac.buffer import Batch, ReplayBuffer

log = logging.getLogger(__name__)
RECENT_EPISODES = 10
EvaluationHook = Callable[[int, float], None]
"""Called with (env step, mean return) after each evaluation during training; raising stops
the run there (a tuning trial's pruner does)."""


@dataclass
class TrainResult:
    """What a training run produced."""

    agent: SAC
    config: SACConfig
    steps: int
    episode_returns: list[float]
    episode_end_steps: list[int]
    steps_per_second: float
    """Env steps per wall-clock second over the steps this call ran."""
    start_step: int = 0
    """Step this call started from: 0, or the step of the checkpoint it resumed."""
    checkpoint_path: Path | None = None
    best: BestPolicy | None = None
    """The best policy of the evaluations during training (None without `eval_every`)."""
    switch_step: int | None = None
    """The env step from whose update on inductor's compiled step ran (None: it never did)."""


@dataclass
class _Progress:
    """Counters and RNGs that, with agent and buffer, define where a run is."""

    step: int = 0
    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    action_rng: np.random.Generator | None = None
    sample_rng: np.random.Generator | None = None


def _seed_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    torch.manual_seed(seed)
    action_seq, sample_seq = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(action_seq), np.random.default_rng(sample_seq)


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]SAC[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[speed]:>6.0f} steps/s"),
        TextColumn("return {task.fields[recent]:>8.1f}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


class _LogWindow:
    """What the loop gathers between two log lines: elapsed steps and time, and the sum of
    the update stats (summed as tensors: no conversion per update)."""

    def __init__(self, start_time: float, start_step: int) -> None:
        self.start_time, self.start_step = start_time, start_step
        self.stats_sum = torch.zeros(len(UpdateStats._fields))
        self.updates = 0

    def add(self, stats: UpdateStats) -> None:
        self.stats_sum += torch.stack(stats)
        self.updates += 1

    def summary(self, now: float, step: int) -> tuple[float, dict[str, float]]:
        """Env steps per second, and the mean stats by name (none without updates)."""
        speed = (step - self.start_step) / (now - self.start_time)
        if not self.updates:
            return speed, {}
        means = (self.stats_sum / self.updates).tolist()
        return speed, dict(zip(UpdateStats._fields, means, strict=True))


class _Run:
    """Mutable state of one training run; `train()` is the public entry point."""

    def __init__(
        self,
        config: SACConfig,
        tracker: Tracker,
        on_evaluation: EvaluationHook | None = None,
        switch_at: int | None = None,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.on_evaluation = on_evaluation
        self.env = make_env(config.env)
        obs_dim, act_dim = space_dims(self.env)
        space = self.env.action_space
        action_rng, sample_rng = _seed_rngs(config.seed)
        self.agent = SAC(config, obs_dim, act_dim, space.low, space.high)
        self.buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim)
        self.progress = _Progress(action_rng=action_rng, sample_rng=sample_rng)
        self.act_dim = act_dim
        self.best = BestPolicy()
        self.switch_at = switch_at
        self.switch_step: int | None = None
        self._awaiting_switch = False

    def state_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "config": self.config.resolved(),
            "actor_spec": asdict(self.agent.actor.spec),
            "step": p.step,
            "episode_returns": list(p.episode_returns),
            "episode_end_steps": list(p.episode_end_steps),
            "agent": self.agent.state_dict(),
            "best_policy": self.best.state_dict(),
            "step_switch": self.switch_step,
            "buffer": self.buffer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "action": p.action_rng.bit_generator.state,
                "sample": p.sample_rng.bit_generator.state,
                "env": self.env.unwrapped.np_random.bit_generator.state,
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        if "best_policy" in state:  # checkpoints from before evaluation during training
            self.best.load_state_dict(state["best_policy"])
        self.buffer.load_state_dict({k: np.asarray(v) for k, v in state["buffer"].items()})
        self.switch_step = state.get("step_switch")  # None: TorchScript ran, and still may
        p = self.progress
        p.step = int(state["step"])
        p.episode_returns = [float(r) for r in state["episode_returns"]]
        p.episode_end_steps = [int(s) for s in state["episode_end_steps"]]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        p.action_rng.bit_generator.state = rng["action"]
        p.sample_rng.bit_generator.state = rng["sample"]
        env_rng = np.random.Generator(getattr(np.random, rng["env"]["bit_generator"])())
        env_rng.bit_generator.state = rng["env"]
        self.env.unwrapped.np_random = env_rng

    def run(self, checkpoint_path: Path | None, show_progress: bool) -> float:
        """Train up to `total_timesteps`; returns env steps per second for this call."""
        cfg, p = self.config, self.progress
        start_step, start_time = p.step, time.perf_counter()
        self.window = _LogWindow(start_time, p.step)
        self.recent = deque(p.episode_returns[-RECENT_EPISODES:], maxlen=RECENT_EPISODES)
        next_checkpoint = _next_multiple(p.step, cfg.checkpoint_every)
        next_eval = _next_multiple(p.step, cfg.eval_every)
        obs: np.ndarray | None = None  # reset lazily, so a checkpoint never sits after a reset
        episode_return = 0.0
        if self.switch_step is None and self.agent.step_compiler == "inductor":
            self.agent.begin_compiled_step(self._example_batch())  # for torch_threads
            torch.set_num_threads(1)  # until the switch; past it, the first update compiles
            self._awaiting_switch = True
        with _progress_bar(show_progress) as bar:
            task = bar.add_task(
                "train", total=cfg.total_timesteps, completed=p.step, speed=0.0, recent=float("nan")
            )
            while p.step < cfg.total_timesteps:
                if obs is None:  # the seed applies to the very first reset only
                    obs, _ = self.env.reset(seed=cfg.seed if p.step == 0 else None)
                    self._observe(obs)
                obs, reward, episode_over = self._collect(obs)
                episode_return += reward
                if p.step > cfg.learning_starts and p.step % cfg.train_freq == 0:
                    self._update()
                if p.step % cfg.log_every == 0:
                    self._log(bar, task)
                if episode_over:
                    self._end_episode(episode_return)
                    obs, episode_return = None, 0.0
                    if 0 < next_eval <= p.step:
                        self._evaluate_progress()
                        next_eval = _next_multiple(p.step, cfg.eval_every)
                    # The last step's checkpoint is train()'s final one: written once.
                    due = 0 < next_checkpoint <= p.step < cfg.total_timesteps
                    if checkpoint_path is not None and due:
                        self.checkpoint_if_room(checkpoint_path)
                        next_checkpoint = _next_multiple(p.step, cfg.checkpoint_every)
            bar.update(task, completed=p.step)
        elapsed = time.perf_counter() - start_time
        return (p.step - start_step) / elapsed if elapsed > 0 else 0.0

    def _collect(self, obs: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """One env step (uniform warm-up actions, then the actor's), stored in the replay
        buffer; the next observation, the reward, and whether the episode is over."""
        p, cfg = self.progress, self.config
        if p.step < cfg.learning_starts:
            squashed = p.action_rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        else:
            if cfg.use_sde and _new_noise_due(p.step, cfg.train_freq, cfg.sde_sample_freq):
                self.agent.reset_exploration()
            squashed = self.agent.explore(obs)
        next_obs, reward, terminated, truncated, _ = self.env.step(
            to_env_action(squashed, self.env.action_space)
        )
        self.buffer.add(obs, squashed, float(reward), next_obs, bool(terminated))
        self._observe(next_obs)
        p.step += 1
        return next_obs, float(reward), bool(terminated or truncated)

    def _observe(self, obs: np.ndarray) -> None:
        """With `normalize_obs`, fold an observation the env returned into the statistics."""
        if self.config.normalize_obs:
            self.agent.actor.normalizer.update(torch.as_tensor(obs, dtype=torch.float32)[None])

    def _example_batch(self) -> Batch:
        """Zeros laid out as the replay buffer's batches (shapes, strides): what inductor's
        step is compiled for before the buffer holds anything."""
        zeros = ReplayBuffer(1, self.buffer.obs_dim, self.buffer.act_dim)
        obs, action = np.zeros(self.buffer.obs_dim), np.zeros(self.buffer.act_dim)
        zeros.add(obs, action, 0.0, obs, False)
        return zeros.sample(self.config.batch_size, np.random.default_rng(0))

    def _switch_when_ready(self) -> None:
        """Run inductor's compiled step from this update on if it is ready, or, replaying a
        recorded switch, from exactly `switch_at` on (waiting for the compile there)."""
        step = self.progress.step
        if self.switch_at is not None and step < self.switch_at:
            return
        switched = self.agent.switch_to_compiled(wait=self.switch_at is not None)
        if switched:
            self.switch_step = step
            self.tracker.set_tags({f"lineage.{lineage.SWITCH_STEP}": str(step)})
            log.info("step %d: the updates run inductor's compiled step from here on", step)
        if switched or not self.agent.step_compiling:  # or its compile failed: TorchScript on
            self._awaiting_switch = False
            torch.set_num_threads(self.config.torch_threads)

    def _update(self) -> None:
        """`gradient_steps` SAC updates on fresh replay batches, their stats kept for the log."""
        if self._awaiting_switch:
            self._switch_when_ready()
        if self.config.learning_rate_schedule != "constant":
            self.agent.set_learning_rate(self.config.learning_rate_at(self.progress.step))
        for _ in range(self.config.gradient_steps):
            batch = self.buffer.sample(self.config.batch_size, self.progress.sample_rng)
            self.window.add(self.agent.update(batch))

    def _log(self, bar: Progress, task: TaskID) -> None:
        """Speed and the window's mean update stats to the tracker, the bar and the log."""
        step, now = self.progress.step, time.perf_counter()
        speed, stats = self.window.summary(now, step)
        self.window = _LogWindow(now, step)
        self.tracker.log_metrics({"steps_per_second": speed, **stats}, step)
        recent_mean = float(np.mean(self.recent)) if self.recent else float("nan")
        bar.update(task, completed=step, speed=speed, recent=recent_mean)
        log.info(
            "step %d/%d | %.0f steps/s | recent return %.1f",
            step,
            self.config.total_timesteps,
            speed,
            recent_mean,
        )

    def _evaluate_progress(self) -> None:
        step = self.progress.step
        mean_return = self.best.evaluate(self.config, self.agent.actor, step)
        self.tracker.log_metrics({PROGRESS_EVAL_METRIC: mean_return}, step)
        log.info(
            "step %d: evaluation return %.1f (best %.1f at step %d)",
            step,
            mean_return,
            self.best.mean_return,
            self.best.step,
        )
        if self.on_evaluation is not None:
            self.on_evaluation(step, mean_return)

    def _end_episode(self, episode_return: float) -> None:
        p = self.progress
        p.episode_returns.append(episode_return)
        p.episode_end_steps.append(p.step)
        self.recent.append(episode_return)
        self.tracker.log_metrics({"episode_return": episode_return}, p.step)

    def save_trained_actor(self, path: Path) -> Path:
        """The actor alone, next to the final checkpoint, and uploaded as the run's actor;
        the best one of the evaluations during training beside it, when there were any."""
        save_actor(path, self.agent.actor, self.config.env)
        self.tracker.log_artifact(path, ACTOR_ARTIFACT_DIR)
        best = self.best.actor(like=self.agent.actor)
        if best is not None:
            best_path = save_actor(path.with_name(BEST_ACTOR_FILE), best, self.config.env)
            self.tracker.log_artifact(best_path, ACTOR_ARTIFACT_DIR)
            self.tracker.log_metrics(
                {"best_progress_eval_mean_return": self.best.mean_return}, self.best.step
            )
        return path

    def checkpoint(self, path: Path) -> Path:
        """Save the run at an episode boundary and upload it as the run's latest checkpoint."""
        save_checkpoint(path, self.state_dict())
        self.tracker.log_artifact(path, CHECKPOINT_ARTIFACT_DIR)
        log.info("checkpoint at step %d -> %s", self.progress.step, path)
        return path

    def checkpoint_if_room(self, path: Path) -> None:
        """A checkpoint along the way. A full disk skips it with one warning and training goes
        on: the disk may have room again by the next one, the last checkpoint written stays the
        resume point meanwhile, and only the final one, which the run cannot finish without,
        fails it."""
        try:
            self.checkpoint(path)
        except DiskFullError as exc:
            log.warning(
                "checkpoint at step %d skipped, training goes on (a retry resumes from the last "
                "one written): %s",
                self.progress.step,
                exc,
            )


def _new_noise_due(step: int, train_freq: int, sde_sample_freq: int) -> bool:
    """Whether gSDE's noise matrix is redrawn before collecting env step `step` + 1: at the
    start of each `train_freq` chunk, and every `sde_sample_freq` steps into one (SB3's
    collect_rollouts)."""
    into_chunk = step % train_freq
    return into_chunk == 0 or (sde_sample_freq > 0 and into_chunk % sde_sample_freq == 0)


def _next_multiple(step: int, every: int) -> int:
    return 0 if every <= 0 else (step // every + 1) * every


def train(
    config: SACConfig,
    *,
    tracker: Tracker | None = None,
    checkpoint_path: str | Path | None = None,
    resume_from: str | Path | None = None,
    show_progress: bool = True,
    on_evaluation: EvaluationHook | None = None,
    switch_at: int | None = None,
) -> TrainResult:
    """Train SAC per `config`, optionally resuming from a checkpoint file.

    With `checkpoint_path`, a checkpoint is written at the first episode end after every
    `checkpoint_every` steps and once at the end, and each is logged to the tracker. With
    `eval_every`, `on_evaluation` hears each evaluation during training. An inductor run
    switches from TorchScript's step to the compiled one as soon as it is compiled, or, with
    `switch_at` (replaying a recorded `switch_step`; 0: the first update), at that env step's
    update, waiting there for the compile.
    """
    tracker = tracker or NullTracker()
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        saved = stored_config(state["config"])
        if saved.model_dump(exclude={"total_timesteps"}) != config.model_dump(
            exclude={"total_timesteps"}
        ):
            raise ValueError(
                f"checkpoint {resume_from} was made with a different config; only "
                "total_timesteps may change on resume"
            )
    with tuned_for_training(config.torch_threads):  # the process is as it was afterwards
        run = _Run(config, tracker, on_evaluation, switch_at)
        start_step = 0
        if resume_from is not None:
            run.load_state_dict(state)
            start_step = run.progress.step
            log.info("resumed from %s at step %d", resume_from, start_step)
        else:
            tracker.log_params({**config.resolved(), "preset": config.applied_preset or "none"})
        run_lineage = lineage.collect(config) if tracker.enabled else {}
        tracker.set_tags(
            {f"lineage.{key}": _tag_value(value) for key, value in run_lineage.items()}
        )
        with tempfile.TemporaryDirectory() as scratch:
            kept = Path(checkpoint_path) if checkpoint_path else None
            # With a tracker, checkpoints always go to the artifact store, via scratch if need be.
            path = kept or (Path(scratch) / CHECKPOINT_FILE if tracker.enabled else None)
            try:
                speed = run.run(path, show_progress)
            finally:
                run.agent.stop_background_compile()
            if tracker.enabled:  # what ran, now that it is known
                ran = lineage.step_compiler_ran(run.agent.step_compiler, run.switch_step)
                run_lineage.update(ran)
                tracker.set_tags({f"lineage.{key}": _tag_value(v) for key, v in ran.items()})
            tracker.log_metrics({"steps_per_second_total": speed}, run.progress.step)
            if path is not None:
                run.checkpoint(path)
                run.save_trained_actor(path.with_name(ACTOR_FILE))
            if tracker.enabled:
                _log_run_artifacts(run, tracker, Path(scratch), run_lineage)
        run.env.close()
    p = run.progress
    return TrainResult(
        run.agent,
        config,
        p.step,
        p.episode_returns,
        p.episode_end_steps,
        speed,
        start_step,
        kept,
        run.best if run.best.actor_state is not None else None,
        run.switch_step,
    )


def _tag_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _log_run_artifacts(
    run: _Run, tracker: Tracker, scratch: Path, run_lineage: dict[str, object]
) -> None:
    """Resolved config, lineage, pip freeze and the reward curve, next to the checkpoint."""
    config_file = scratch / CONFIG_ARTIFACT
    config_file.write_text(yaml.safe_dump(run.config.resolved(), sort_keys=False))
    tracker.log_artifact(config_file)
    lineage_dir = scratch / "lineage"
    lineage_dir.mkdir()
    (lineage_dir / "lineage.json").write_text(json.dumps(run_lineage, indent=2))
    (lineage_dir / "pip-freeze.txt").write_text(lineage.pip_freeze())
    for path in sorted(lineage_dir.iterdir()):
        tracker.log_artifact(path, "lineage")
    p = run.progress
    if p.episode_returns:
        title = f"SAC on {run.config.env_id} (seed {run.config.seed})"
        curve = reward_curve_png(
            p.episode_end_steps, p.episode_returns, scratch / "reward_curve.png", title
        )
        tracker.log_artifact(curve)
