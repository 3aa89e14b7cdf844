"""CPU latency of the eager actor vs the exported TorchScript actor.

Single-threaded (as a policy server worker would run), warmed up, every call timed on its own,
eager and exported calls interleaved so both see the same machine noise. Reports median and
p95 in microseconds and the speedup per batch size.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rl_core.networks import Actor

DEFAULT_BATCH_SIZES = (1, 8, 32, 128)


@dataclass(frozen=True)
class LatencyRow:
    """Latency of one batch size, in microseconds."""

    batch_size: int
    eager_median_us: float
    eager_p95_us: float
    exported_median_us: float
    exported_p95_us: float

    @property
    def speedup(self) -> float:
        """Eager median over exported median."""
        return self.eager_median_us / self.exported_median_us

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "speedup": self.speedup}


def _timed_calls(
    first: Callable[[], object], second: Callable[[], object], calls: int
) -> tuple[np.ndarray, np.ndarray]:
    """Time `calls` invocations of each function, alternating between them."""
    first_ns = np.empty(calls, dtype=np.int64)
    second_ns = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        start = clock()
        first()
        middle = clock()
        second()
        second_ns[i] = clock() - middle
        first_ns[i] = middle - start
    return first_ns / 1e3, second_ns / 1e3


def benchmark_latency(
    actor: Actor,
    exported: torch.jit.ScriptModule,
    obs_dim: int,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    calls: int = 2_000,
    warmup: int = 200,
    seed: int = 0,
) -> list[LatencyRow]:
    """Median and p95 latency of eager vs exported deterministic actions per batch size."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    try:
        with torch.inference_mode():
            for batch in batch_sizes:
                obs = torch.randn(batch, obs_dim, generator=generator)

                def eager(o: torch.Tensor = obs) -> torch.Tensor:
                    return actor.deterministic_action(o)

                def scripted(o: torch.Tensor = obs) -> torch.Tensor:
                    return exported(o)

                _timed_calls(eager, scripted, warmup)
                eager_us, exported_us = _timed_calls(eager, scripted, calls)
                rows.append(
                    LatencyRow(
                        batch,
                        float(np.median(eager_us)),
                        float(np.percentile(eager_us, 95)),
                        float(np.median(exported_us)),
                        float(np.percentile(exported_us, 95)),
                    )
                )
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def latency_table(rows: Sequence[LatencyRow]) -> Table:
    """The rows as a rich table: batch, eager, scripted, speedup."""
    table = Table(title="Actor latency, 1 CPU thread (µs, median / p95)")
    for column in ("batch", "eager", "scripted", "speedup"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row.batch_size),
            f"{row.eager_median_us:.1f} / {row.eager_p95_us:.1f}",
            f"{row.exported_median_us:.1f} / {row.exported_p95_us:.1f}",
            f"x{row.speedup:.2f}",
        )
    return table


def format_latency_table(rows: Sequence[LatencyRow]) -> str:
    """The table as plain text (for logs and MLflow artifacts)."""
    buffer = io.StringIO()
    Console(file=buffer, width=100, force_terminal=False).print(latency_table(rows))
    return buffer.getvalue()
