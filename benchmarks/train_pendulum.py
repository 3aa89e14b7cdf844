"""Training throughput, quality and peak memory of the default config, from one run.

    .venv/bin/python benchmarks/train_pendulum.py            # 20,000 steps, seed 0
    .venv/bin/python benchmarks/train_pendulum.py --seed 1 --steps 20000

Prints env-steps/s, the mean deterministic return over eval seeds 1000..1009 and the peak RSS
of this process (training only: evaluation runs after the figure is read). The checkpoint goes
to benchmarks/results/ for `export_latency.py`. Targets (issue 3): >= 200 steps/s,
return >= -200, peak RSS <= 400 MiB.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from rl_core.config import SACConfig
from rl_core.evaluation import evaluate
from rl_core.training import train

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # measure training, not logging

    config = SACConfig(total_timesteps=args.steps, seed=args.seed)
    checkpoint = RESULTS / f"pendulum-seed{args.seed}.pt"
    start = time.perf_counter()
    result = train(config, checkpoint_path=checkpoint, show_progress=sys.stdout.isatty())
    wall = time.perf_counter() - start
    rss = peak_rss_mib()
    evaluation = evaluate(result.agent.act, config.env_id, config.eval_seeds)

    print(
        f"config           default SAC, {config.env_id}, seed {config.seed}, "
        f"{config.total_timesteps} steps, {config.torch_threads} threads, "
        f"matmul {config.matmul_precision}"
    )
    print(
        f"throughput       {result.steps_per_second:.0f} env-steps/s "
        f"({wall:.1f} s wall incl. setup)   target >= 200"
    )
    print(
        f"quality          mean return {evaluation.mean:.1f} ± {evaluation.std:.1f} "
        f"on seeds {config.eval_seeds[0]}..{config.eval_seeds[-1]}   target >= -200"
    )
    print(f"memory           peak RSS {rss:.0f} MiB   target <= 400")
    print(f"checkpoint       {checkpoint}")


if __name__ == "__main__":
    main()
