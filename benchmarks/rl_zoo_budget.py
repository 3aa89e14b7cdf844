"""rlops at RL-Zoo's own step budgets, beside RL-Zoo's published SAC scores (issue 37, item 4).

    .venv/bin/python -m benchmarks.rl_zoo_budget --env HalfCheetah-v5 LunarLanderContinuous-v3
    .venv/bin/python -m benchmarks.rl_zoo_budget --env Pendulum-v1 --seeds 0 1 2
    .venv/bin/python -m benchmarks.rl_zoo_budget --quick        # smoke run, a minute or two

For each env and seed, rlops trains at RL-Zoo's budget for the env (`--steps` overrides it)
with the env's RL-Zoo preset, as `rlops train` does without MLflow (`train()` in a child
process, so peak RSS is the run's alone; no checkpoint is written), then its final policy
plays one deterministic episode per eval seed 1000..1009, as vs_sb3.py evaluates. The
compiled (inductor) step is built before the timed run when the run will use it, so the
run starts on a warm cache; each row says whether the run compiled anything itself.

Speed is read from what the run logs to its tracker: env-steps/s over each `log_every` window.
The table gives it over the first 30k steps (uniform warm-up included, as issue 37's 428
steps/s for a 30k HalfCheetah run), over the updating part of those 30k (after
`learning_starts`), and over the last 10% of the run; the target is last 10% >= 0.8 x first
30k. SB3 2.9.2 (its own venv, as vs_sb3.py) trains the same env, hyperparameters and seed for
`learning_starts` plus `--sb3-window` steps right after each rlops run; its projected time at
the budget is its warm-up time plus the remaining steps at its updating speed (a lower bound:
SB3's replay sampling slows as its buffer fills too).

The published scores are from rl-baselines3-zoo's `benchmark.md` (read at commit 0088472,
github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md): one trained agent per env,
mean and std of the deterministic return over its eval episodes, on the gym versions of the
time (HalfCheetah-v3, LunarLanderContinuous-v2). "within 1 std" means rlops' mean return is at
least the published mean minus that std.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from benchmarks.vs_sb3 import REPO, job_config, rlops_job, sb3_python, standard_error
from rl_core.common.tracking import NullTracker

HERE = Path(__file__).resolve().parent
FIRST_SPAN = 30_000
"""Issue 37 compares a full-budget run's speed with a 30k-step run's."""
TARGET_RATIO = 0.8
EVAL_EPISODES = 10
QUICK_ENVS, QUICK_STEPS, QUICK_WINDOW = ("Pendulum-v1", "LunarLanderContinuous-v3"), 2_000, 500


class Published(NamedTuple):
    """One SAC row of RL-Zoo's benchmark.md."""

    zoo_env: str
    budget: int
    mean: float
    std: float


PUBLISHED = {
    "Pendulum-v1": Published("Pendulum-v1", 20_000, -156.995, 88.714),
    "MountainCarContinuous-v0": Published("MountainCarContinuous-v0", 50_000, 94.679, 1.134),
    "LunarLanderContinuous-v3": Published("LunarLanderContinuous-v2", 500_000, 260.390, 65.467),
    "BipedalWalker-v3": Published("BipedalWalker-v3", 500_000, 297.668, 33.060),
    "HalfCheetah-v5": Published("HalfCheetah-v3", 1_000_000, 9535.451, 100.470),
    "Hopper-v5": Published("Hopper-v3", 1_000_000, 2325.547, 1129.676),
    "Walker2d-v5": Published("Walker2d-v3", 1_000_000, 3863.203, 254.347),
    "Ant-v5": Published("Ant-v3", 1_000_000, 4615.791, 1354.111),
}
"""RL-Zoo's published SAC scores (benchmark.md, see the module doc), by the env rlops runs."""


class Span(NamedTuple):
    """Env-steps/s over the logged windows between two steps."""

    steps_per_second: float
    first: int
    last: int


def span_speed(log: list[tuple[int, float]], first: int, last: int) -> Span | None:
    """Env-steps/s over the logged windows lying within steps `first`..`last` (a window runs
    from the previous logged step, or 0, to its own), or None when no whole window does."""
    starts = [0, *(step for step, _ in log[:-1])]
    inside = [
        (start, end, speed)
        for start, (end, speed) in zip(starts, log, strict=True)
        if start >= first and end <= last
    ]
    if not inside:
        return None
    steps = sum(end - start for start, end, _ in inside)
    seconds = sum((end - start) / speed for start, end, speed in inside)
    return Span(steps / seconds, inside[0][0], inside[-1][1])


def verdict(mean_return: float, published: Published) -> str:
    """rlops' mean return against the published score: above it, within one published std
    below it, or BELOW."""
    if mean_return >= published.mean:
        return "above"
    return "within 1 std" if mean_return >= published.mean - published.std else "BELOW"


def sb3_projected_seconds(window: dict[str, float], budget: int) -> float:
    """SB3's time for `budget` steps: its measured warm-up, then the rest at its updating
    speed."""
    updating_speed = window["updating_steps"] / window["updating_seconds"]
    return window["warmup_seconds"] + (budget - window["warmup_steps"]) / updating_speed


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def mean_and_error(values: list[float]) -> str:
    error = standard_error(values)
    mean = statistics.mean(values)
    return f"{mean:.1f}" if math.isnan(error) else f"{mean:.1f} ± {error:.1f}"


class SpeedRecorder(NullTracker):
    """Records nothing but the env-steps/s each log window reports (`enabled` stays False,
    so the run does what it does without MLflow)."""

    def __init__(self) -> None:
        self.log: list[tuple[int, float]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if "steps_per_second" in metrics:
            self.log.append((step, metrics["steps_per_second"]))


def run_rlops(job: dict[str, object]) -> dict[str, object]:
    """Train and evaluate in this process; a job that only warms the step cache trains with
    its first update waiting for inductor's compile (`switch_at=0`), and evaluates nothing."""
    from rl_core.evaluation.episodes import evaluate
    from rl_core.run.training import train

    config = job_config(job)
    recorder = SpeedRecorder()
    started = time.perf_counter()
    warm_only = bool(job.get("warm_only"))
    switch_at = 0 if warm_only else None
    result = train(config, tracker=recorder, show_progress=False, switch_at=switch_at)
    wall = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    returns = [] if warm_only else evaluate(result.agent.act, config.env, config.eval_seeds).returns
    return {
        "wall_seconds": wall,
        "speed_log": recorder.log,
        "returns": returns,
        "peak_rss": rss,
        "switch_step": result.switch_step,
    }


def run_child(argv: list[str]) -> dict[str, object]:
    """A worker process's JSON line (its last line of output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)  # measure training, not logging
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_argv(job: dict[str, object]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.rl_zoo_budget", "--worker", json.dumps(job)]


def compiled_steps() -> set[str]:
    """The inductor steps cached on this machine."""
    from rl_core.sac.aot_step import cache_dir

    return {path.name for path in cache_dir().glob("sac-step-*.pt2")}


@dataclass
class EnvPlan:
    """What runs for one env: budget and the `--set` fields over its preset."""

    env: str
    budget: int
    fields: list[str]
    threads: int

    def job(self, seed: int, steps: int | None = None, extra: tuple[str, ...] = ()) -> dict:
        """vs_sb3.py's job for this env (its preset's hyperparameters, resolved)."""
        args = argparse.Namespace(
            env=self.env,
            steps=steps or self.budget,
            threads=self.threads,
            eval_episodes=EVAL_EPISODES,
            set=[*self.fields, *extra],
        )
        return rlops_job(args, seed)


def plan(env: str, steps: int | None, threads: int) -> EnvPlan:
    """The env's budget and fields: `learning_starts` halves the budget when a smoke budget
    is not above the preset's, and `log_every` leaves at least two windows in the last 10%."""
    from rl_core.common.config import SACConfig
    from rl_core.common.presets import preset_for

    budget = steps or PUBLISHED[env].budget
    fields = []
    learning_starts = preset_for(env).get(
        "learning_starts", SACConfig.model_fields["learning_starts"].default
    )
    if learning_starts >= budget:
        fields.append(f"learning_starts={budget // 2}")
    log_every = SACConfig.model_fields["log_every"].default
    if budget // 20 < log_every:
        fields.append(f"log_every={max(1, budget // 20)}")
    return EnvPlan(env, budget, fields, threads)


def warm_step_cache(env_plan: EnvPlan, seed: int) -> str:
    """Build the inductor step the budget run will load, with a run of one update; says
    whether it was cached already."""
    job = env_plan.job(seed)
    if job["rlops_only"]["step_compiler"] != "inductor":
        return f"n/a ({job['rlops_only']['step_compiler']} step)"
    before = compiled_steps()
    batch = job["hyperparameters"]["batch_size"]
    warmup = env_plan.job(
        seed, steps=batch + 2, extra=(f"learning_starts={batch}", "step_compiler=inductor")
    )
    run_child(worker_argv({**warmup, "warm_only": True}))
    return "cache was warm" if compiled_steps() == before else "cache warmed now"


def measure_env(env_plan: EnvPlan, seed: int, window: int) -> dict[str, object]:
    """The budget run of rlops, then SB3's short window on the same job."""
    cache = warm_step_cache(env_plan, seed)
    job = env_plan.job(seed)
    before = compiled_steps()
    rlops = run_child(worker_argv(job))
    if compiled_steps() != before:
        cache += "; the run COMPILED a step (cold)"
    if rlops["switch_step"] is not None:
        cache += f"; compiled step from env step {rlops['switch_step']}"
    sb3_job = {**job, "steps": max(job["hyperparameters"]["learning_starts"], 1) + window}
    sb3 = run_child([str(sb3_python()), str(HERE / "sb3_window.py"), json.dumps(sb3_job)])
    return {
        "seed": seed,
        "rlops": rlops,
        "sb3": sb3,
        "cache": cache,
        "step": job["rlops_only"],
        "learning_starts": job["hyperparameters"]["learning_starts"],
    }


RESULT_HEADER = (
    "env",
    "budget",
    "rlops return, mean ± s.e.",
    "RL-Zoo SAC, mean ± std",
    "rlops vs RL-Zoo",
    "rlops wall (train)",
    "SB3 projected",
    "SB3 / rlops time",
)
SPEED_HEADER = (
    "env",
    "seed",
    f"env-steps/s, first {FIRST_SPAN // 1000}k (steps)",
    "its updating part",
    "last 10%",
    "last / first",
    "last / updating",
    f"last >= {TARGET_RATIO} x first",
    "peak RSS",
    "SB3 updating env-steps/s",
    "step",
    "compile cache",
)


def markdown_table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    """A table that reads in a terminal and pastes into a closing note or the docs."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def speed_row(env_plan: EnvPlan, run: dict) -> list[str]:
    """One run's speed: first 30k, its updating part, last 10%, ratios, RSS, step, cache."""
    log = [(step, speed) for step, speed in run["rlops"]["speed_log"]]
    budget = env_plan.budget
    first = span_speed(log, 0, min(FIRST_SPAN, budget))
    updating = span_speed(log, run["learning_starts"], min(FIRST_SPAN, budget))
    last = span_speed(log, budget - budget // 10, budget)
    cells = [env_plan.env, str(run["seed"])]
    for span in (first, updating, last):
        cells.append(f"{span.steps_per_second:.0f} ({span.first}-{span.last})" if span else "n/a")
    for base in (first, updating):
        ratio = last.steps_per_second / base.steps_per_second if last and base else None
        cells.append(f"x{ratio:.2f}" if ratio else "n/a")
    met = last and first and last.steps_per_second >= TARGET_RATIO * first.steps_per_second
    sb3 = run["sb3"]["updating_steps"] / run["sb3"]["updating_seconds"]
    cells += ["yes" if met else "NO", f"{run['rlops']['peak_rss']:.0f} MiB", f"{sb3:.0f}"]
    return [*cells, run["step"]["step_compiler"], run["cache"]]


def result_row(env_plan: EnvPlan, runs: list[dict]) -> list[str]:
    """The env's row: return against the published score, wall time, SB3's projection."""
    published = PUBLISHED[env_plan.env]
    seed_means = [statistics.mean(run["rlops"]["returns"]) for run in runs]
    if len(runs) == 1:
        rlops_return = mean_and_error(runs[0]["rlops"]["returns"]) + " (over episodes)"
    else:
        rlops_return = mean_and_error(seed_means) + f" (over {len(runs)} seeds)"
    wall = statistics.mean(run["rlops"]["wall_seconds"] for run in runs)
    sb3 = statistics.mean(sb3_projected_seconds(run["sb3"], env_plan.budget) for run in runs)
    return [
        env_plan.env,
        f"{env_plan.budget:,}",
        rlops_return,
        f"{published.mean:.1f} ± {published.std:.1f} @{published.budget:,} ({published.zoo_env})",
        verdict(statistics.mean(seed_means), published),
        duration(wall),
        duration(sb3),
        f"x{sb3 / wall:.2f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--env",
        nargs="+",
        choices=sorted(PUBLISHED),
        default=["HalfCheetah-v5"],
        metavar="ENV",
        help=f"one or more of {', '.join(sorted(PUBLISHED))}",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, help="override RL-Zoo's budget (smoke runs)")
    parser.add_argument("--sb3-window", type=int, default=3_000, help="SB3 steps timed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both systems")
    parser.add_argument("--quick", action="store_true", help="Pendulum + LunarLander, 2k steps")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_rlops(json.loads(args.worker))))
        return
    if args.steps is not None and args.steps < 2:
        parser.error(f"--steps {args.steps}: expected 2 or more")
    if args.quick:
        args.env, args.steps, args.sb3_window = list(QUICK_ENVS), QUICK_STEPS, QUICK_WINDOW

    from rl_core.common import cpu

    sb3_python()  # create the peer venv before timing anything
    plans = [plan(env, args.steps, args.threads) for env in args.env]
    print(f"command: python -m benchmarks.rl_zoo_budget {' '.join(sys.argv[1:])}")
    print(f"CPU: {cpu.model()} ({', '.join(cpu.kernel_flags())}); {args.threads} torch threads")
    print(f"seeds {args.seeds}; eval seeds 1000..{999 + EVAL_EPISODES}, deterministic")
    results = {}
    for env_plan in plans:
        fields = f" with {', '.join(env_plan.fields)}" if env_plan.fields else ""
        print(f"{env_plan.env}: {env_plan.budget:,} steps, RL-Zoo preset{fields}", flush=True)
        results[env_plan.env] = []
        for seed in args.seeds:
            run = measure_env(env_plan, seed, args.sb3_window)
            returns, wall = run["rlops"]["returns"], run["rlops"]["wall_seconds"]
            print(
                f"  seed {seed}: return {statistics.mean(returns):.1f}, trained in "
                f"{duration(wall)}; compile cache: {run['cache']}",
                flush=True,
            )
            results[env_plan.env].append(run)
    print()
    print(markdown_table(RESULT_HEADER, [result_row(p, results[p.env]) for p in plans]))
    print()
    rows = [speed_row(p, run) for p in plans for run in results[p.env]]
    print(markdown_table(SPEED_HEADER, rows))


if __name__ == "__main__":
    main()
