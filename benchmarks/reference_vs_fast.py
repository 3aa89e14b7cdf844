"""Updates/s and peak RSS: the hand-written step against the reference, eager and compiled.

Issue 36 asks whether `torch.compile` of the readable step (rl_core/sac/sac_reference.py:
forward, backward and torch.optim.Adam in one compiled function) comes within 15% of the
hand-written step (rl_core/sac/sac_step.py). Each variant runs in its own process (peak RSS is
per process) on one thread, on random batches of the preset's shapes and sizes:

    .venv/bin/python benchmarks/reference_vs_fast.py [--updates 300] [--envs Pendulum-v1 ...]

The compiled variants' times exclude their compile, reported apart; whether the compile
caches were warm (inductor's and rlops' AOT step cache) is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parent process only starts children: torch is imported in them
    from rl_core.common.config import SACConfig
    from rl_core.sac.agent import SAC

VARIANTS = {
    "fast-inductor-ieee": "hand-written step, AOTInductor, fp32",
    "fast-inductor-auto": "hand-written step, AOTInductor, default precision",
    "fast-torchscript-ieee": "hand-written step, TorchScript, fp32",
    "reference-eager": "reference, eager, fused Adam",
    "reference-compiled": "reference, torch.compile (autograd traced, foreach Adam)",
}
WARMUP = 10


def _agent(env_id: str, variant: str) -> tuple[SAC, SACConfig]:
    import gymnasium as gym
    import numpy as np

    from rl_core.common.config import build_config
    from rl_core.sac.agent import SAC

    compiler = variant.split("-")[1] if variant.startswith("fast") else "reference"
    precision = "auto" if variant.endswith("auto") else "ieee"
    config = build_config(
        {"env_id": env_id, "step_compiler": compiler, "matmul_precision": precision}
    )
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = np.asarray(env.action_space.low), np.asarray(env.action_space.high)
    env.close()
    return SAC(config, obs_dim, act_dim, low, high), config


def measure(env_id: str, variant: str, updates: int) -> dict[str, object]:
    """One variant in this process: compile (first update) seconds, updates/s, peak RSS."""
    import torch

    from rl_core.sac import sac_reference
    from rl_core.sac.buffer import Batch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    agent, config = _agent(env_id, variant)
    n, obs_dim, act_dim = config.batch_size, agent.actor.obs_dim, agent.actor.act_dim
    batch = Batch(
        torch.randn(n, obs_dim),
        torch.rand(n, act_dim) * 2 - 1,
        torch.randn(n),
        torch.randn(n, obs_dim),
        (torch.rand(n) < 0.05).float(),
    )
    step = agent.update
    if variant == "reference-compiled":
        torch._dynamo.config.trace_autograd_ops = True  # the backward inside the graphs
        optimizers = [  # the fused CPU Adam is compile-disabled by torch: foreach instead
            torch.optim.Adam(group.param_groups[0]["params"], lr=config.learning_rate)
            for group in (agent.critic_optimizer, agent.policy_optimizer)
        ]
        learner = agent._learner._replace(
            critic_optimizer=optimizers[0], policy_optimizer=optimizers[1]
        )
        compiled = torch.compile(sac_reference.update)

        def step(batch: Batch) -> object:
            return compiled(learner, batch)

    start = time.perf_counter()
    step(batch)
    first = time.perf_counter() - start
    for _ in range(WARMUP):
        step(batch)
    start = time.perf_counter()
    for _ in range(updates):
        stats = step(batch)
    seconds = time.perf_counter() - start
    assert torch.isfinite(stats[0]), "the step diverged"
    graphs = None
    if variant == "reference-compiled":
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
    return {
        "env": env_id,
        "variant": variant,
        "hidden": list(config.hidden_sizes),
        "batch": n,
        "precision": config.effective_matmul_precision,
        "first_update_s": first,
        "updates_per_s": updates / seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "graphs": graphs,
    }


def _cache_state() -> str:
    """Whether the compile caches held anything before this run. Entries may be for other
    shapes: a variant's first update (its compile) shows whether its own shape was cached."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    from rl_core.sac.aot_step import cache_dir as aot_cache

    held = [str(p) for p in (Path(cache_dir()), aot_cache()) if p.is_dir() and any(p.iterdir())]
    return f"not empty ({', '.join(held)})" if held else "cold (caches empty)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--one", nargs=2, metavar=("ENV", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.updates)))
        return
    from rl_core.common import cpu

    caches = _cache_state()
    rows = []
    for env_id in args.envs:
        for variant in VARIANTS:
            child = [sys.executable, __file__, "--updates", str(args.updates), "--one"]
            done = subprocess.run(
                [*child, env_id, variant], capture_output=True, text=True, check=True
            )
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"CPU: {cpu.model()} ({', '.join(cpu.kernel_flags())}); 1 torch thread")
    print(f"compile caches at start: {caches}; {args.updates} timed updates after {WARMUP}")
    print(f"date: {time.strftime('%Y-%m-%d')}; command: python benchmarks/reference_vs_fast.py")
    header = "| env | variant | net, batch | precision | updates/s | vs fast fp32 | "
    print(header + "first update s | peak RSS MiB | graphs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(
            r["updates_per_s"]
            for r in rows
            if r["env"] == row["env"] and r["variant"] == "fast-inductor-ieee"
        )
        print(
            f"| {row['env']} | {row['variant']} | {row['hidden']}, {row['batch']} | "
            f"{row['precision']} | {row['updates_per_s']:.1f} | "
            f"{row['updates_per_s'] / base:.2f} | {row['first_update_s']:.1f} | "
            f"{row['peak_rss_mib']:.0f} | {row['graphs'] or '-'} |"
        )


if __name__ == "__main__":
    main()
