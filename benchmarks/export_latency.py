"""Latency of the trained policy: eager deterministic action vs the exported TorchScript actor
and the exported ONNX actor in ONNX Runtime (one intra-op thread, sequential execution).

    .venv/bin/python benchmarks/train_pendulum.py     # writes benchmarks/results/pendulum-seed0.pt
    .venv/bin/python benchmarks/export_latency.py     # uses it (trains one first if missing)

Prints the latency table (batch 1/8/32/128, 1 thread, 2,000 individually timed calls per point,
eager, TorchScript and ONNX Runtime calls interleaved) and, at batch 1, the TorchScript variants
that were considered (plain script, frozen, optimize_for_inference). Target (issue 3): at batch 1
the exported median is at most half the eager one and at most 20 µs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from rl_core.common.config import SACConfig
from rl_core.policy.checkpoint import load_agent
from rl_core.policy.export import InferenceActor, export_actor, load_exported
from rl_core.policy.latency import benchmark_latency, format_latency_table
from rl_core.policy.onnx_export import export_onnx, load_onnx
from rl_core.run.training import train
from rl_core.sac.torchscript import quiet_torchscript

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "results" / "pendulum-seed0.pt"


def torchscript_variants(actor: torch.nn.Module) -> dict[str, torch.jit.ScriptModule]:
    with quiet_torchscript():
        return {
            "script": torch.jit.script(InferenceActor(actor).eval()),
            "script+freeze": torch.jit.freeze(torch.jit.script(InferenceActor(actor).eval())),
            "optimize_for_inference": torch.jit.optimize_for_inference(
                torch.jit.script(InferenceActor(actor).eval())
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--calls", type=int, default=2_000)
    args = parser.parse_args()
    if not args.checkpoint.exists():
        print(f"{args.checkpoint} missing: training the default config first (~2 min)")
        train(SACConfig(), checkpoint_path=args.checkpoint, show_progress=False)
    agent, config = load_agent(args.checkpoint)
    obs_dim = agent.actor.obs_dim

    with tempfile.TemporaryDirectory() as tmp:
        exported = export_actor(agent.actor, Path(tmp) / "actor.pt", config.env_id)
        scripted = load_exported(exported.path)
        onnx_exported = export_onnx(agent.actor, Path(tmp) / "actor.onnx", config.env_id)
        onnx_actor = load_onnx(onnx_exported.path)
    for name, result in (("TorchScript", exported), ("ONNX", onnx_exported)):
        print(
            f"{name} export check: max |Δaction| {result.max_abs_diff:.2e} on "
            f"{result.n_checked} observations"
        )
    rows = benchmark_latency(agent.actor, scripted, obs_dim, calls=args.calls, onnx=onnx_actor)
    print(format_latency_table(rows))
    first = rows[0]
    print(
        f"batch 1: exported median {first.exported_median_us:.1f} µs vs eager "
        f"{first.eager_median_us:.1f} µs -> x{first.speedup:.2f}   "
        "target: x >= 2.0 and <= 20 µs"
    )

    print("\nTorchScript variants at batch 1 (each interleaved with the eager actor):")
    for name, module in torchscript_variants(agent.actor).items():
        (row,) = benchmark_latency(agent.actor, module, obs_dim, batch_sizes=(1,), calls=args.calls)
        print(
            f"  {name:24s} {row.exported_median_us:6.1f} µs (eager {row.eager_median_us:.1f})"
            f"  x{row.speedup:.2f}"
        )


if __name__ == "__main__":
    main()
