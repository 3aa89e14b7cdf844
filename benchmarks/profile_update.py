"""Where one SAC training step's time goes on this CPU, and how far it is from the hardware.

    .venv/bin/python -m benchmarks.profile_update
    .venv/bin/python -m benchmarks.profile_update --threads 1 --precision ieee
    .venv/bin/python -m benchmarks.profile_update --env HalfCheetah-v5 --steps 300
    .venv/bin/python -m benchmarks.profile_update --step-compiler inductor

Runs the training loop's own pieces (the env, `SAC.explore`, the replay buffer, `SAC.update`)
with the config `rlops train` would use, after filling the buffer with warm-up steps, and
prints:

- one env step split into env step, action selection, replay add and sample, and the update's
  phases (critic step, actor and alpha step, target update), each split into matmuls, Adam,
  the other ops (elementwise, casts, reductions), and the TorchScript interpreter and
  dispatch time between those ops (rl_core/sac/sac_step.py runs the update as one graph). The
  step total comes from an unprofiled pass; the shares within the update from a
  torch.profiler pass over the same loop (the profiler's own cost stays out of the total);
- the work per update: FLOPs (torch.utils.flop_counter) and the bytes its ops read and write,
  the rates achieved, against the rate of a large GEMM measured here in the update's matmul
  dtype (the ceiling of the arithmetic on these cores: a nominal peak from /proc/cpuinfo's
  clock would miss boost clocks and how many bf16 pipes a core has) and the measured memory
  copy bandwidth;
- which kernel each matmul ran: oneDNN's implementation names, from ONEDNN_VERBOSE in a
  child process (fp32 matmuls run in MKL, which oneDNN does not report).

With the step compiled by inductor the update is one fused graph: its phases and ops have no
names a profiler could split by, so the loop's pieces, the update's total and its FLOP rate are
shown (the FLOPs counted on the TorchScript step, which runs the same matmuls).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from rl_core.common import cpu
from rl_core.common.config import SACConfig, build_config
from rl_core.common.process_settings import tuned_for_training
from rl_core.envs.spec import make_env, space_dims, to_env_action
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import ReplayBuffer
from rl_core.sac.sac_step import ADAM_SCOPE, CRITIC_PHASE, POLICY_PHASE, TARGET_PHASE

REPO = Path(__file__).resolve().parent.parent
LOOP_PHASES = ("env step", "action selection", "replay add + sample")
UPDATE_PHASES = {CRITIC_PHASE: "critic", POLICY_PHASE: "actor + alpha", TARGET_PHASE: "target"}
PARTS = ("matmuls", "Adam", "other ops", "interpreter + dispatch")
MATMUL_OPS = frozenset(f"aten::{name}" for name in ("mm", "bmm", "addmm", "baddbmm", "matmul"))
VIEW_OPS = frozenset(
    f"aten.{name}"
    for name in (
        "t.default",
        "view.default",
        "_unsafe_view.default",
        "expand.default",
        "transpose.int",
        "permute.default",
        "detach.default",
        "unsqueeze.default",
        "squeeze.dim",
        "slice.Tensor",
        "select.int",
        "split.Tensor",
        "as_strided.default",
        "alias.default",
    )
)


@dataclass
class Loop:
    """The pieces of one training run, stepped as the training loop steps them."""

    config: SACConfig
    env: Any
    agent: SAC
    buffer: ReplayBuffer
    rng: np.random.Generator
    obs: np.ndarray

    @classmethod
    def start(cls, config: SACConfig, warmup: int) -> Loop:
        """Agent, env and a buffer already holding `warmup` uniform-random transitions."""
        torch.manual_seed(config.seed)
        env = make_env(config.env)
        obs_dim, act_dim = space_dims(env)
        space = env.action_space
        agent = SAC(config, obs_dim, act_dim, space.low, space.high)
        loop = cls(
            config,
            env,
            agent,
            ReplayBuffer(config.buffer_size, obs_dim, act_dim),
            np.random.default_rng(config.seed),
            env.reset(seed=config.seed)[0],
        )
        for _ in range(warmup):
            loop.env_step(loop.rng.uniform(-1.0, 1.0, act_dim).astype(np.float32))
        return loop

    def env_step(self, squashed: np.ndarray) -> None:
        next_obs, reward, terminated, truncated, _ = self.env.step(
            to_env_action(squashed, self.env.action_space)
        )
        self.buffer.add(self.obs, squashed, float(reward), next_obs, bool(terminated))
        self.obs = self.env.reset()[0] if terminated or truncated else next_obs

    def step(self, timed: Callable[[str], Any]) -> None:
        """One training step, each piece inside `timed(name)`."""
        with timed("action selection"):
            squashed = self.agent.explore(self.obs)
        with timed("env step"):
            self.env_step(squashed)
        with timed("replay add + sample"):
            batch = self.buffer.sample(self.config.batch_size, self.rng)
        with timed("update"):
            self.agent.update(batch)


class _Stopwatch:
    """`timed(name)` blocks that add their wall time to `totals[name]`."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = collections.defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - start


def _part(event_name: str) -> str:
    if event_name in MATMUL_OPS:
        return "matmuls"
    if event_name == ADAM_SCOPE:
        return "Adam"
    return "other ops"


def update_shares(loop: Loop, steps: int) -> dict[tuple[str, str], float]:
    """Share of the update's time per (phase, part), from a torch.profiler pass."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            loop.step(record_function)
    times: dict[tuple[str, str], float] = collections.defaultdict(float)
    for event in prof.events():
        phase = UPDATE_PHASES.get(event.name)
        if phase is None:
            continue
        inside = 0.0
        for child in event.cpu_children:
            times[phase, _part(child.name)] += child.cpu_time_total
            inside += child.cpu_time_total
        times[phase, "interpreter + dispatch"] += event.cpu_time_total - inside
    total = sum(times.values())
    return {key: value / total for key, value in times.items()}


class _BytesTouched(TorchDispatchMode):
    """Counts the compute ops run and the bytes of their tensor inputs and outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if str(func) not in VIEW_OPS and not str(func).startswith("profiler."):
            tensors = {
                id(t): t
                for t in tree_flatten((args, kwargs, out))[0]
                if isinstance(t, torch.Tensor)
            }
            self.bytes += sum(t.numel() * t.element_size() for t in tensors.values())
            self.ops += 1
        return out


def work_per_update(loop: Loop) -> tuple[float, int, float]:
    """FLOPs, compute ops and bytes touched of one update (counted, not timed)."""
    batch = loop.buffer.sample(loop.config.batch_size, loop.rng)
    with FlopCounterMode(display=False) as flops:
        loop.agent.update(batch)
    with _BytesTouched() as touched:
        loop.agent.update(batch)
    return flops.get_total_flops(), touched.ops, touched.bytes


def copy_bandwidth(mib: int = 256) -> float:
    """Bytes per second of a large tensor copy (read + write): the memory system's rate."""
    source = torch.ones(mib * 2**18)
    target = torch.empty_like(source)
    target.copy_(source)
    start = time.perf_counter()
    for _ in range(5):
        target.copy_(source)
    return 5 * 2 * source.numel() * 4 / (time.perf_counter() - start)


def gemm_ceiling(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of the fastest of `repeats` n x n x n matmuls in `dtype` on the torch threads in
    use: what this machine's GEMM kernels reach when nothing but arithmetic limits them."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # oneDNN creates its primitive
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        fastest = min(fastest, time.perf_counter() - start)
    return 2 * n**3 / fastest


def kernel_report(argv: list[str]) -> list[str]:
    """oneDNN's matmul implementations per update, from a child run with ONEDNN_VERBOSE=1."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    child = [sys.executable, "-m", "benchmarks.profile_update", *argv, "--kernels-child"]
    out = subprocess.run(
        child, env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    _, _, after = out.partition("== marker ==")
    calls: dict[tuple[str, str, str], list[float]] = collections.defaultdict(list)
    for line in after.splitlines():
        fields = line.split(",")
        if len(fields) > 6 and fields[3] == "exec" and fields[5] == "matmul":
            dtype = fields[8].split()[0].split(":")[1]  # "src:<dtype>:..."
            calls[fields[6], dtype, fields[-2]].append(float(fields[-1]))
    if not calls:
        return ["  none: every matmul ran in MKL (fp32)"]
    return [
        f"  {impl:<28} {dtype:<5} {shape:<24} {len(times) / KERNEL_UPDATES:>4.0f}x"
        f" {statistics.median(times) * 1000:>7.1f} us"
        for (impl, dtype, shape), times in sorted(calls.items(), key=lambda kv: -sum(kv[1]))
    ]


KERNEL_UPDATES = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "ieee"])
    parser.add_argument(
        "--step-compiler", default="auto", choices=["auto", "torchscript", "inductor"]
    )
    parser.add_argument("--steps", type=int, default=500, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2_000, help="random steps first")
    parser.add_argument("--kernels-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = build_config(
        {
            "env_id": args.env,
            "torch_threads": args.threads,
            "matmul_precision": args.precision,
            "step_compiler": args.step_compiler,
        }
    )
    split = config.effective_step_compiler == "torchscript"
    loop = Loop.start(config, args.warmup)
    with tuned_for_training(config.torch_threads):
        for _ in range(50):  # oneDNN creates its primitives, inductor compiles, on first use
            loop.step(_Stopwatch())
        if args.kernels_child:
            print("== marker ==", flush=True)
            for _ in range(KERNEL_UPDATES):
                loop.agent.update(loop.buffer.sample(config.batch_size, loop.rng))
            return
        watch = _Stopwatch()
        for _ in range(args.steps):
            loop.step(watch)
        shares = update_shares(loop, min(args.steps, 200)) if split else {}
        if split:
            flops, ops, touched = work_per_update(loop)
        else:  # the inductor graph hides its ops; the TorchScript step does the same matmuls
            twin = config.model_copy(update={"step_compiler": "torchscript"})
            flops, _, _ = work_per_update(Loop.start(twin, config.batch_size))
    per_step = {name: seconds / args.steps for name, seconds in watch.totals.items()}
    step_time = sum(per_step.values())
    update_time = per_step.pop("update")

    hidden = "x".join(map(str, config.hidden_sizes))
    print(
        f"{config.env_id}: {hidden}, batch {config.batch_size}, {config.torch_threads} torch "
        f"thread(s), {config.effective_matmul_precision} matmuls, "
        f"{config.effective_step_compiler} step, {args.steps} steps"
    )
    print(f"CPU: {cpu.model()} ({', '.join(cpu.kernel_flags())}), ATen {cpu.capability()}")
    print(f"one env step: {step_time * 1e3:.2f} ms ({1 / step_time:.0f} env-steps/s)")
    print(f"  {'where':<34}{'ms/step':>9}{'share':>8}")
    rows = [(name, per_step[name]) for name in LOOP_PHASES]
    rows += [
        (f"{phase}: {part}", update_time * shares.get((phase, part), 0.0))
        for phase in UPDATE_PHASES.values()
        for part in PARTS
        if (phase, part) in shares
    ]
    if not split:
        rows.append(("update: one inductor graph", update_time))
    for name, seconds in rows:
        print(f"  {name:<34}{seconds * 1e3:>9.3f}{seconds / step_time:>8.1%}")
    achieved = flops / update_time
    gemm_dtype = torch.bfloat16 if config.effective_matmul_precision == "bf16" else torch.float32
    ceiling = gemm_ceiling(gemm_dtype)
    counted = "" if split else " (counted on the TorchScript step: the same matmuls)"
    print(f"work per update: {flops / 1e9:.3f} GFLOP in matmuls{counted}")
    print(
        f"  {achieved / 1e9:.0f} GFLOP/s over the whole update: {achieved / ceiling:.0%} of "
        f"a 2048^3 {str(gemm_dtype).removeprefix('torch.')} GEMM on the same threads here "
        f"({ceiling / 1e9:.0f} GFLOP/s)"
    )
    if not split:
        print("(ops, bytes and matmul kernels per update: run with --step-compiler torchscript)")
        return
    bandwidth = copy_bandwidth()
    print(
        f"  {ops} compute ops reading and writing {touched / 2**20:.1f} MiB: "
        f"{touched / update_time / 1e9:.1f} GB/s of op traffic; a large copy runs at "
        f"{bandwidth / 1e9:.1f} GB/s here; {ops / update_time / 1e3:.0f}k ops/s"
    )
    print("matmul kernels per update (oneDNN implementation, src dtype, shape, calls, median):")
    argv = [
        "--env",
        args.env,
        "--threads",
        str(args.threads),
        "--precision",
        args.precision,
        "--warmup",
        str(min(args.warmup, 500)),
    ]
    print("\n".join(kernel_report(argv)))


if __name__ == "__main__":
    main()
