"""SAC updates per second with bf16 vs fp32 ("ieee") matmuls, by network width, on this CPU.

    .venv/bin/python benchmarks/matmul_precision.py
    .venv/bin/python benchmarks/matmul_precision.py --widths 64 256 --threads 2 --rounds 5

The two precisions alternate round by round in one process, so a noisy neighbour slows both
alike; the table gives the median over rounds and the bf16/ieee ratio. This is the evidence
behind `matmul_precision: auto` (rl_core/common/cpu.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from rl_core.common import cpu
from rl_core.common.config import SACConfig
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import ReplayBuffer

OBS_DIM, ACT_DIM = 3, 1  # Pendulum-v1
PRECISIONS = ("bf16", "ieee")


def _agent_and_buffer(width: int, batch: int, precision: str) -> tuple[SAC, ReplayBuffer]:
    config = SACConfig(hidden_sizes=(width, width), batch_size=batch, matmul_precision=precision)
    torch.manual_seed(0)
    agent = SAC(config, OBS_DIM, ACT_DIM, np.array([-2.0]), np.array([2.0]))
    buffer = ReplayBuffer(10_000, OBS_DIM, ACT_DIM)
    rng = np.random.default_rng(0)
    for _ in range(10_000):
        obs = rng.normal(size=OBS_DIM)
        buffer.add(obs, rng.uniform(-1, 1, ACT_DIM), rng.normal(), obs, False)
    return agent, buffer


def updates_per_second(agent: SAC, buffer: ReplayBuffer, batch: int, n: int) -> float:
    rng = np.random.default_rng(1)
    for _ in range(20):  # warm-up: oneDNN primitives are created on first use
        agent.update(buffer.sample(batch, rng))
    start = time.perf_counter()
    for _ in range(n):
        agent.update(buffer.sample(batch, rng))
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU {cpu.model()} | flags {' '.join(cpu.kernel_flags())} | {args.threads} thread(s)")
    header = ("width=batch", "bf16 upd/s", "ieee upd/s", "bf16/ieee", "auto")
    print(" ".join(f"{h:>11}" for h in header))
    for width in args.widths:
        runs = {p: _agent_and_buffer(width, width, p) for p in PRECISIONS}
        rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for _ in range(args.rounds):
            for precision, (agent, buffer) in runs.items():
                rates[precision].append(updates_per_second(agent, buffer, width, args.updates))
        bf16, ieee = (statistics.median(rates[p]) for p in PRECISIONS)
        auto = cpu.resolve_matmul_precision("auto", width)
        print(f"{width:>11} {bf16:>11.0f} {ieee:>11.0f} {bf16 / ieee:>11.2f} {auto:>11}")


if __name__ == "__main__":
    main()
