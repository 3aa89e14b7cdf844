"""A first run on a fresh machine against a warm one: the default Pendulum run, 20k steps.

    .venv/bin/python benchmarks/cold_start.py                 # 2 rounds, cold and warm alternating
    .venv/bin/python benchmarks/cold_start.py --rounds 3 --blocking

Each run trains in its own process. "cold" starts with fresh RLOPS_CACHE_DIR and
TORCHINDUCTOR_CACHE_DIR folders, so inductor's step compiles during the run (in the background:
rl_core/sac/aot_step.py); "warm" finds it in a cache filled before the first round.
`--blocking` adds the behaviour before background compiles: cold, the first update waiting for
the compile (`train(switch_at=0)`). Prints env-steps/s (train()'s own figure, the compile
included), the switch step, peak RSS of the training process and of its compiling child, the
CPU, and the ratio cold / warm of the medians. Target (issue 37): cold within 10% of warm.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rl_core.common import cpu
from rl_core.common.config import SACConfig
from rl_core.run.training import train

MODES = ("cold", "warm", "blocking")
TARGET = 0.90
"""Cold runs reach at least this fraction of the warm runs' env-steps/s."""


def run_one(steps: int, seed: int, switch_at: int | None, compiler: str) -> dict[str, object]:
    """Train the default config once in this process (the caches come from the environment)."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # measure training, not logging
    config = SACConfig(total_timesteps=steps, seed=seed, step_compiler=compiler)
    started = time.perf_counter()
    result = train(config, show_progress=False, switch_at=switch_at)
    return {
        "steps_per_second": result.steps_per_second,
        "seconds": time.perf_counter() - started,
        "switch_step": result.switch_step,
        "step_compiler": config.effective_step_compiler,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "child_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def in_child(args: list[str], caches: Path) -> dict[str, object]:
    """`run_one` in a fresh process whose compile caches are under `caches`."""
    env = {
        **os.environ,
        "RLOPS_CACHE_DIR": str(caches / "rlops"),
        "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
    }
    done = subprocess.run(
        [sys.executable, __file__, "--one", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the benchmark's child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blocking", action="store_true", help="also the old first-update wait")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--switch-at", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--step-compiler", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the child: one run, one JSON line
        print(json.dumps(run_one(args.steps, args.seed, args.switch_at, args.step_compiler)))
        return

    config = SACConfig(total_timesteps=args.steps)
    print(
        f"cold vs warm compile cache: default SAC on {config.env_id}, {args.steps} steps, "
        f"seed {args.seed}, step_compiler auto -> {config.effective_step_compiler}, "
        f"{config.torch_threads} threads, {args.rounds} rounds alternating"
    )
    print(f"CPU {cpu.model()} | {os.cpu_count()} cores | flags {' '.join(cpu.kernel_flags())}")
    common = ["--steps", str(args.steps), "--seed", str(args.seed)]
    with tempfile.TemporaryDirectory(prefix="rlops-cold-start-") as scratch:
        warm = Path(scratch, "warm")
        filled = time.perf_counter()  # the warm cache: the same step, compiled once
        fill = ["--steps", "300", "--step-compiler", "inductor", "--switch-at", "0"]
        in_child([*fill, "--seed", str(args.seed)], warm)
        print(f"warm cache filled in {time.perf_counter() - filled:.0f} s")
        modes = [m for m in MODES if m != "blocking" or args.blocking]
        print(
            f"{'round':>5} {'cache':>8} {'steps/s':>8} {'seconds':>8} {'switch':>7} "
            f"{'RSS MiB':>8} {'compile RSS':>11}"
        )
        speeds: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(1, args.rounds + 1):
            for mode in modes:
                caches = warm if mode == "warm" else Path(scratch, f"{mode}-{round_}")
                extra = ["--switch-at", "0"] if mode == "blocking" else []
                row = in_child(common + extra, caches)
                speeds[mode].append(row["steps_per_second"])
                print(
                    f"{round_:>5} {mode:>8} {row['steps_per_second']:>8.1f} "
                    f"{row['seconds']:>8.1f} {row['switch_step']!s:>7} {row['rss_mib']:>8.0f} "
                    f"{row['child_rss_mib']:>11.0f}"
                )
    medians = {mode: statistics.median(values) for mode, values in speeds.items()}
    ratio = medians["cold"] / medians["warm"]
    verdict = "yes" if ratio >= TARGET else "NO"
    print(
        "median steps/s: "
        + ", ".join(f"{m} {v:.1f}" for m, v in medians.items())
        + f" | cold/warm {ratio:.3f} (target >= {TARGET}): {verdict}"
    )


if __name__ == "__main__":
    main()
