"""CPU latency of the eager actor vs the exported TorchScript actor and its ONNX Runtime twin.

Single-threaded (as a policy server worker would run: torch with one thread, the ONNX Runtime
session with one intra-op thread and sequential execution), warmed up, every call timed on its
own, the runtimes' calls interleaved so all see the same machine noise. Reports median and p95
in microseconds and the speedup over eager per batch size.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rl_core.policy.export import ExportedActor
from rl_core.sac.networks import Actor

DEFAULT_BATCH_SIZES = (1, 8, 32, 128)


@dataclass(frozen=True)
class LatencyRow:
    """Latency of one batch size, in microseconds."""

    batch_size: int
    eager_median_us: float
    eager_p95_us: float
    exported_median_us: float
    exported_p95_us: float
    """The TorchScript actor (the `exported`/`scripted` names predate ONNX)."""
    onnx_median_us: float | None = None
    onnx_p95_us: float | None = None
    """The ONNX actor in ONNX Runtime; None when it was not measured."""

    @property
    def speedup(self) -> float:
        """Eager median over TorchScript median."""
        return self.eager_median_us / self.exported_median_us

    @property
    def onnx_speedup(self) -> float | None:
        """Eager median over ONNX Runtime median."""
        return None if self.onnx_median_us is None else self.eager_median_us / self.onnx_median_us

    def as_dict(self) -> dict[str, float | None]:
        return {**asdict(self), "speedup": self.speedup, "onnx_speedup": self.onnx_speedup}


def timed_calls(functions: Sequence[Callable[[], object]], calls: int) -> list[np.ndarray]:
    """Microseconds of `calls` invocations of each function, interleaved round by round."""
    elapsed_ns = np.empty((len(functions), calls), dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        for j, function in enumerate(functions):
            start = clock()
            function()
            elapsed_ns[j, i] = clock() - start
    return list(elapsed_ns / 1e3)


def benchmark_latency(
    actor: Actor,
    exported: torch.jit.ScriptModule,
    obs_dim: int,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    calls: int = 2_000,
    warmup: int = 200,
    seed: int = 0,
    *,
    onnx: ExportedActor | None = None,
) -> list[LatencyRow]:
    """Median and p95 latency of eager vs TorchScript (and, given `onnx`, ONNX Runtime)
    deterministic actions per batch size."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    try:
        with torch.inference_mode():
            for batch in batch_sizes:
                obs = torch.randn(batch, obs_dim, generator=generator)

                runtimes = [partial(actor.deterministic_action, obs), partial(exported, obs)]
                if onnx is not None:
                    runtimes.append(partial(onnx, obs))
                timed_calls(runtimes, warmup)
                stats = [
                    (float(np.median(us)), float(np.percentile(us, 95)))
                    for us in timed_calls(runtimes, calls)
                ]
                rows.append(LatencyRow(batch, *(x for pair in stats for x in pair)))
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def latency_table(rows: Sequence[LatencyRow]) -> Table:
    """The rows as a rich table: batch, eager, scripted, speedup, and onnx, onnx speedup when
    ONNX Runtime was measured."""
    with_onnx = any(row.onnx_median_us is not None for row in rows)
    columns = ["batch", "eager", "scripted", "speedup"]
    table = Table(title="Actor latency, 1 CPU thread (µs, median / p95)")
    for column in columns + (["onnx", "onnx speedup"] if with_onnx else []):
        table.add_column(column, justify="right")
    for row in rows:
        cells = [
            str(row.batch_size),
            f"{row.eager_median_us:.1f} / {row.eager_p95_us:.1f}",
            f"{row.exported_median_us:.1f} / {row.exported_p95_us:.1f}",
            f"x{row.speedup:.2f}",
        ]
        if with_onnx:
            cells += (
                ["-", "-"]
                if row.onnx_speedup is None
                else [
                    f"{row.onnx_median_us:.1f} / {row.onnx_p95_us:.1f}",
                    f"x{row.onnx_speedup:.2f}",
                ]
            )
        table.add_row(*cells)
    return table


def format_latency_table(rows: Sequence[LatencyRow]) -> str:
    """The table as plain text (for logs and MLflow artifacts)."""
    buffer = io.StringIO()
    Console(file=buffer, width=100, force_terminal=False).print(latency_table(rows))
    return buffer.getvalue()
