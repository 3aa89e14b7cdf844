"""Why env-steps/s falls as the replay buffer fills: each suspect measured on its own.

    .venv/bin/python -m benchmarks.full_buffer
    .venv/bin/python -m benchmarks.full_buffer --env HalfCheetah-v5 --rounds 8

A 1M-step HalfCheetah-v5 run (`rlops train`, seed 0, warm step cache) averaged 243 env-steps/s
against 428 for a 30k-step run (issue 37). Training 1M steps to find out takes an hour of both
cores, so this script measures the loop's pieces with the config `rlops train` uses for that
run (the env's RL-Zoo preset, `total_timesteps` 1M), at replay fills from 30k to 1M rows (the
buffer is prefilled with random rows, vectorised, in seconds):

- per env step: `ReplayBuffer.sample` (and the row gather it replaced, numpy fancy indexing),
  one SAC update on batches sampled at 30k and at 1M, the env step with `SAC.explore` and
  `ReplayBuffer.add`, and a warm-up step (uniform action). The fills alternate in rounds, so
  the shared machine's load falls on each alike;
- what else grows with the run: a checkpoint's save at 30k and 1M rows (the filled table is
  most of it; the buffer state as a copy, as before, and as the view it now is) and how many
  the config writes inside the timed loop, one evaluation during training and how many, RSS;
- the warm-up share: `learning_starts` steps take no update, a third of a 30k run and 1% of a
  1M one, so a 30k run's steps/s is inflated. From the issue's 30k figure and the measured
  warm-up step, the time of an updating step follows, and with it each cause's share of the
  issue's gap in ms per env step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rl_core.common import cpu
from rl_core.common.config import SACConfig, build_config
from rl_core.common.process_settings import tuned_for_training
from rl_core.envs.spec import make_env, space_dims, to_env_action
from rl_core.policy.best_policy import BestPolicy
from rl_core.policy.checkpoint import save_checkpoint
from rl_core.sac import aot_step
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import Batch, ReplayBuffer

SHORT_RUN, FULL_RUN = 30_000, 1_000_000
FILLS = (30_000, 100_000, 300_000, 1_000_000)
"""Replay fills whose sampling is timed; a 1M run's mean sampling cost interpolates them."""
ISSUE_STEPS_PER_S = {SHORT_RUN: 428.0, FULL_RUN: 243.0}
"""Issue 37's averages for HalfCheetah-v5 (AMD EPYC, 2 cores, warm step cache)."""
PREFILL_CHUNK = 100_000


def rss_mib() -> float:
    """Resident set size of this process now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    """Mean wall time of one call of `fn` over `calls` calls, in microseconds."""
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls * 1e6


def prefill(buffer: ReplayBuffer, rows: int, seed: int) -> None:
    """Fill the first `rows` rows with random transitions, a chunk at a time (no temporary
    the size of the table)."""
    rng = np.random.default_rng(seed)
    for start in range(0, rows, PREFILL_CHUNK):
        chunk = buffer.table[start : min(start + PREFILL_CHUNK, rows)]
        chunk[:] = rng.standard_normal(chunk.shape, dtype=np.float32)
    buffer.table[:rows, -1] = 0.0  # HalfCheetah never terminates
    buffer.size, buffer.position = rows, rows % buffer.capacity


def updates_us(agent: SAC, batches: list[Batch]) -> float:
    """Mean wall time of one `SAC.update` over `batches`, in microseconds."""
    started = time.perf_counter()
    for batch in batches:
        agent.update(batch)
    return (time.perf_counter() - started) / len(batches) * 1e6


def fancy_index_sample(buffer: ReplayBuffer, batch_size: int, rng: np.random.Generator) -> object:
    """The row gather `sample` did before: numpy fancy indexing of the table."""
    return torch.from_numpy(buffer.table[rng.integers(0, buffer.size, size=batch_size)])


def env_step_us(config: SACConfig, agent: SAC, steps: int) -> tuple[float, float]:
    """Mean time of one collected step: (warm-up with a uniform action, with `SAC.explore`),
    each with the env step and the replay add, as the training loop's `_collect`."""
    env = make_env(config.env)
    obs_dim, act_dim = space_dims(env)
    scratch = ReplayBuffer(2 * steps, obs_dim, act_dim)
    rng = np.random.default_rng(config.seed)
    obs, _ = env.reset(seed=config.seed)

    def collect(explore: bool) -> None:
        nonlocal obs
        if explore:
            squashed = agent.explore(obs)
        else:
            squashed = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(
            to_env_action(squashed, env.action_space)
        )
        scratch.add(obs, squashed, float(reward), next_obs, bool(terminated))
        obs = env.reset()[0] if terminated or truncated else next_obs

    warmup = per_call_us(lambda: collect(False), steps)
    acting = per_call_us(lambda: collect(True), steps)
    env.close()
    return warmup, acting


def save_s(agent: SAC, buffer: ReplayBuffer, fill: int, copy: bool, folder: Path) -> float:
    """Seconds to take the state and write a checkpoint of the agent and `fill` replay rows,
    the rows copied first (as the buffer's state was before) or not (as it is now)."""
    buffer.size = fill
    started = time.perf_counter()
    state = buffer.state_dict()
    if copy:
        state = {**state, "table": np.array(state["table"])}
    save_checkpoint(folder / "checkpoint.pt", {"agent": agent.state_dict(), "buffer": state})
    return time.perf_counter() - started


def checkpoints_in_loop(config: SACConfig, steps: int) -> int:
    """Checkpoints a run of `steps` writes inside its timed loop (the final one is after it)."""
    return 0 if config.checkpoint_every <= 0 else (steps - 1) // config.checkpoint_every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the fills")
    parser.add_argument("--samples", type=int, default=2_000, help="timed samples per round")
    parser.add_argument("--updates", type=int, default=100, help="timed updates per round")
    parser.add_argument("--env-steps", type=int, default=2_000)
    args = parser.parse_args()

    config = build_config({"env_id": args.env, "total_timesteps": FULL_RUN})
    env = make_env(config.env)
    obs_dim, act_dim = space_dims(env)
    agent = SAC(config, obs_dim, act_dim, env.action_space.low, env.action_space.high)
    env.close()
    rss = {"start": rss_mib()}
    buffer = ReplayBuffer(config.buffer_size, obs_dim, act_dim)
    started = time.perf_counter()
    prefill(buffer, SHORT_RUN, config.seed)
    rss["30k rows"] = rss_mib()
    prefill(buffer, FULL_RUN, config.seed)
    prefill_s = time.perf_counter() - started
    rss["1M rows"] = rss_mib()
    rng = np.random.default_rng(config.seed)

    cached = set(aot_step.cache_dir().glob("*.pt2"))
    with tuned_for_training(config.torch_threads):
        started = time.perf_counter()
        agent.update(buffer.sample(config.batch_size, rng))  # compiles or loads the step
        first_update_s = time.perf_counter() - started
        warm = agent.step_compiler != "inductor" or not (
            set(aot_step.cache_dir().glob("*.pt2")) - cached
        )
        sample_us: dict[tuple[str, int], list[float]] = {}
        update_us: dict[int, list[float]] = {}
        samplers = {
            "sample()": lambda: buffer.sample(config.batch_size, rng),
            "fancy index": lambda: fancy_index_sample(buffer, config.batch_size, rng),
        }
        for _ in range(args.rounds):
            for fill in FILLS:
                buffer.size = fill
                for name, sampler in samplers.items():
                    times = sample_us.setdefault((name, fill), [])
                    times.append(per_call_us(sampler, args.samples))
                if fill in (SHORT_RUN, FULL_RUN):
                    batches = [buffer.sample(config.batch_size, rng) for _ in range(args.updates)]
                    update_us.setdefault(fill, []).append(updates_us(agent, batches))
        warmup_us, acting_us = env_step_us(config, agent, args.env_steps)
        started = time.perf_counter()
        BestPolicy().evaluate(config, agent.actor, 0)
        eval_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        saves = {
            (fill, copy): save_s(agent, buffer, fill, copy, Path(folder))
            for copy in (True, False)
            for fill in (SHORT_RUN, FULL_RUN)
        }
    rss["after checkpoints"] = rss_mib()

    sample = {key: statistics.median(times) for key, times in sample_us.items()}
    update = {fill: statistics.median(times) for fill, times in update_us.items()}
    print(
        f"CPU: {cpu.model()}; torch threads {config.torch_threads}; step compiler "
        f"{agent.step_compiler}, {'warm' if warm else 'cold'} cache (first update "
        f"{first_update_s:.1f} s); matmul {config.effective_matmul_precision}"
    )
    print(
        f"{config.env_id}, batch {config.batch_size}, learning_starts {config.learning_starts}, "
        f"row {buffer.table.shape[1]} floats; prefill of {FULL_RUN:,} rows {prefill_s:.1f} s; "
        f"medians of {args.rounds} rounds\n"
    )
    print(f"{'replay fill':>12} {'sample() us':>12} {'fancy index us':>15} {'update us':>10}")
    for fill in FILLS:
        upd = f"{update[fill]:>10.0f}" if fill in update else f"{'':>10}"
        print(
            f"{fill:>12,} {sample['sample()', fill]:>12.1f} "
            f"{sample['fancy index', fill]:>15.1f} {upd}"
        )
    print(f"env step + explore + add: {acting_us:.0f} us; warm-up step: {warmup_us:.0f} us")

    # A run fills its buffer linearly: its mean sampling cost over its updating steps.
    fills = np.linspace(config.learning_starts, FULL_RUN, 1_000)
    mean_sample = {
        name: float(np.mean(np.interp(fills, FILLS, [sample[name, f] for f in FILLS])))
        for name in samplers
    }
    for name in samplers:
        ratio = mean_sample[name] / sample[name, SHORT_RUN]
        print(
            f"{name}: mean over a 1M run {mean_sample[name]:.1f} us, x{ratio:.2f} its cost at 30k"
        )
    now_vs_before = {fill: sample["sample()", fill] / sample["fancy index", fill] for fill in FILLS}
    print(
        f"sample() / fancy index: x{now_vs_before[FULL_RUN]:.2f} at 1M rows, "
        f"x{now_vs_before[SHORT_RUN]:.2f} at 30k"
    )

    print(f"\n{'checkpoint save':>16} {'30k rows s':>11} {'1M rows s':>10}")
    for copy, label in ((True, "table copied"), (False, "table viewed")):
        print(f"{label:>16} {saves[SHORT_RUN, copy]:>11.2f} {saves[FULL_RUN, copy]:>10.2f}")
    ckpt = {steps: checkpoints_in_loop(config, steps) for steps in (SHORT_RUN, FULL_RUN)}
    evals = {
        steps: 0 if config.eval_every <= 0 else steps // config.eval_every
        for steps in (SHORT_RUN, FULL_RUN)
    }
    print(
        f"checkpoint_every {config.checkpoint_every}: {ckpt[SHORT_RUN]} / {ckpt[FULL_RUN]} "
        f"checkpoints inside the timed loop of a 30k / 1M run"
    )
    print(
        f"one evaluation during training ({len(config.progress_eval_seeds)} episodes): "
        f"{eval_s:.1f} s, the same at any fill; eval_every {config.eval_every}: "
        f"{evals[SHORT_RUN]} / {evals[FULL_RUN]} evaluations"
    )
    print("RSS MiB: " + ", ".join(f"{name} {value:.0f}" for name, value in rss.items()))

    # The issue's gap in ms per env step, and what each cause explains of it.
    per_step_ms = {steps: 1e3 / speed for steps, speed in ISSUE_STEPS_PER_S.items()}
    gap_ms = per_step_ms[FULL_RUN] - per_step_ms[SHORT_RUN]
    warmup_ms = warmup_us / 1e3
    warm_steps = config.learning_starts
    updating_ms = (per_step_ms[SHORT_RUN] * SHORT_RUN - warm_steps * warmup_ms) / (
        SHORT_RUN - warm_steps
    )
    dilution = warm_steps / SHORT_RUN - warm_steps / FULL_RUN
    causes_ms = {
        "warm-up share (no updates in 1/3 of a 30k run)": (updating_ms - warmup_ms) * dilution,
        "sampling a fuller table, sample() now": (
            mean_sample["sample()"] - sample["sample()", SHORT_RUN]
        )
        / 1e3,
        "sampling a fuller table, fancy index before": (
            mean_sample["fancy index"] - sample["fancy index", SHORT_RUN]
        )
        / 1e3,
        "update on 1M-fill batches": (update[FULL_RUN] - update[SHORT_RUN]) / 1e3,
        "checkpoints in the loop": ckpt[FULL_RUN] * saves[FULL_RUN, False] * 1e3 / FULL_RUN
        - ckpt[SHORT_RUN] * saves[SHORT_RUN, False] * 1e3 / SHORT_RUN,
        "evaluations in the loop": eval_s
        * 1e3
        * (evals[FULL_RUN] / FULL_RUN - evals[SHORT_RUN] / SHORT_RUN),
    }
    print(
        f"\nissue: {ISSUE_STEPS_PER_S[SHORT_RUN]:.0f} steps/s at 30k, "
        f"{ISSUE_STEPS_PER_S[FULL_RUN]:.0f} at 1M: {per_step_ms[SHORT_RUN]:.3f} -> "
        f"{per_step_ms[FULL_RUN]:.3f} ms per env step, a gap of {gap_ms:.3f} ms"
    )
    like_for_like = ISSUE_STEPS_PER_S[FULL_RUN] * updating_ms / 1e3
    print(
        f"an updating step of the 30k run: {updating_ms:.3f} ms, so a 30k run updating on "
        f"every step would show {1e3 / updating_ms:.0f} steps/s: the 1M run's "
        f"{ISSUE_STEPS_PER_S[FULL_RUN]:.0f} is x{like_for_like:.2f} of it (target >= x0.80)"
    )
    print(f"{'cause':>48} {'ms/step':>8} {'share of gap':>13}")
    for cause, ms in causes_ms.items():
        print(f"{cause:>48} {ms:>8.3f} {ms / gap_ms:>12.0%}")
    counted = [k for k in causes_ms if "before" not in k]
    rest = gap_ms - sum(causes_ms[k] for k in counted)
    print(f"{'not explained here (env, machine)':>48} {rest:>8.3f} {rest / gap_ms:>12.0%}")


if __name__ == "__main__":
    main()
