"""Training throughput, quality and peak memory of the default config, per seed and precision.

    .venv/bin/python benchmarks/train_pendulum.py                       # 20,000 steps, seed 0
    .venv/bin/python benchmarks/train_pendulum.py --seeds 0 1 2 --precisions bf16 ieee

Each (seed, precision) trains in its own process, precisions alternating, so peak RSS is that
run's alone and a noisy neighbour hits both precisions alike. Prints env-steps/s, the mean
deterministic return over eval seeds 1000..1009 and the peak RSS (training only: evaluation
runs after it is read). Targets (issue 3): >= 200 steps/s, return >= -200, peak RSS <= 400 MiB.
The checkpoints go to benchmarks/results/ for `export_latency.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from rl_core.common import cpu
from rl_core.common.config import SACConfig
from rl_core.evaluation.episodes import evaluate
from rl_core.run.training import train

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = ("auto", "bf16", "ieee")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(steps: int, seed: int, precision: str) -> dict[str, object]:
    """Train the default config once in this process and measure it."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # measure training, not logging
    config = SACConfig(total_timesteps=steps, seed=seed, matmul_precision=precision)
    suffix = "" if precision == "auto" else f"-{precision}"
    checkpoint = RESULTS / f"pendulum-seed{seed}{suffix}.pt"
    result = train(config, checkpoint_path=checkpoint, show_progress=False)
    rss = peak_rss_mib()
    evaluation = evaluate(result.agent.act, config.env, config.eval_seeds)
    return {
        "seed": seed,
        "precision": config.effective_matmul_precision,
        "steps_per_second": result.steps_per_second,
        "mean_return": evaluation.mean,
        "std_return": evaluation.std,
        "peak_rss_mib": rss,
        "checkpoint": str(checkpoint),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISIONS)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # the child: one run, one JSON line
        print(json.dumps(run_one(args.steps, args.seeds[0], args.precisions[0])))
        return

    config = SACConfig()
    print(
        f"default SAC on {config.env_id}: {args.steps} steps, {config.torch_threads} threads, "
        f"hidden {list(config.hidden_sizes)}, batch {config.batch_size}"
    )
    print(f"CPU {cpu.model()} | flags {' '.join(cpu.kernel_flags())}")
    header = f"{'seed':>4} {'matmul':>6} {'steps/s':>8} {'mean return':>12} {'± std':>7}"
    print(f"{header} {'RSS MiB':>8}")
    rows = []
    for seed in args.seeds:
        for precision in args.precisions:
            child = [sys.executable, __file__, "--one", "--steps", str(args.steps)]
            child += ["--seeds", str(seed), "--precisions", precision]
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.splitlines()[-1])
            rows.append(row)
            print(
                f"{seed:>4} {row['precision']:>6} {row['steps_per_second']:>8.0f} "
                f"{row['mean_return']:>12.1f} {row['std_return']:>7.1f} "
                f"{row['peak_rss_mib']:>8.0f}",
                flush=True,
            )
    for precision in sorted({r["precision"] for r in rows}):
        mine = [r for r in rows if r["precision"] == precision]
        print(
            f"{precision}: median {statistics.median(r['steps_per_second'] for r in mine):.0f} "
            f"steps/s, worst return {min(r['mean_return'] for r in mine):.1f}, "
            f"max RSS {max(r['peak_rss_mib'] for r in mine):.0f} MiB "
            "(targets >= 200 steps/s, >= -200, <= 400 MiB)"
        )


if __name__ == "__main__":
    main()
