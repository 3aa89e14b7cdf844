"""The learning guards: does SAC still learn Pendulum, and would a quarter of its return lost
show?

A short run before the learning transition (~3-5k steps here) is chaotic: one rounding
difference between two CPUs decides whether a seed has learned yet. So a guard trains past
the transition and asks something robust: the **median over seeds** of the mean deterministic
return on eval seeds 1000..1009, through the pipeline's own evaluation
(rl_core/evaluation/episodes.py), must reach the guard's bound. An untrained actor scores about
-1,200 to -1,800.

Two guards. `FAST` trains small networks (64x64, TorchScript, ieee: what "auto" picks for
them) for 8k steps on seeds 0, 1, 2. `PRODUCTION` trains what ships: the default 256x256
networks and batch, bf16 matmuls and inductor's compiled step, for 6k steps on seeds 0 and 1
(both at once, one per core: the second seed costs no wall time).

Measured on AMD EPYC (family 25 model 17, avx512_bf16), 2026-12, eval return per seed:

    FAST 8k, ieee, seeds 0-5:   -171.1 -170.9 -176.0 -169.3 -178.5 -176.6
    FAST 8k, bf16, seeds 0-5:   -193.4 -171.5 -174.7 -173.6 -366.1 -171.2
    FAST 7k, both, seeds 0-5:   -167 .. -193;  at 6k up to -248 (bf16 seed 0)
    PRODUCTION, seeds 0-1:      6k -170 -168;  7k -177 -253;  8k -174.1 -173.8

A healthy seed lands at -166..-193, with an occasional seed that fails a few eval episodes
(bf16 seed 4 at 8k: -366; production seed 1 at 7k: -253): hence a median. The healthy median
is -174 (12 FAST runs), so a 20% loss is -209; both bounds, -200, sit between, 7 above the
worst healthy FAST seed that is not an outlier. FAST trains 8k steps, not 7k, because its
spread at 7k reached -193 on two runs of twelve; PRODUCTION 6k, the last point before the
7k dip, past a transition that both seeds made by 5k. The Intel Xeon kind (amx_bf16) was not
reachable when this was set; short runs learn differently there (field notes I): run this
module there before trusting the bounds on it.

Seeds train two at a time, each in a fresh process on one torch thread (the CI box has two
cores). A defect (tests/regression/defects.py) is injected by name inside each of those
processes: a monkeypatch in the caller's process would not reach them.

Run it by hand to see the margin on this machine, and to check that real defects fail it:

    .venv/bin/python -m tests.regression.learning_guard                 # 5 seeds x {bf16, ieee}
    .venv/bin/python -m tests.regression.learning_guard --defects       # each defect, 5 seeds
    .venv/bin/python -m tests.regression.learning_guard --guard production --seeds 0 1
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
import torch

from rl_core.common import cpu
from rl_core.common.config import SACConfig
from rl_core.evaluation import episodes
from rl_core.run.training import train
from rl_core.sac.agent import SAC
from rl_core.sac.buffer import ReplayBuffer
from tests.regression.defects import DEFECTS, HEALTHY


@dataclass(frozen=True)
class Guard:
    """A training config, the seeds it trains, and the bound their median return must reach."""

    name: str
    config: dict[str, object]
    seeds: tuple[int, ...]
    bound: float


FAST = Guard(
    "fast",
    {"total_timesteps": 8_000, "hidden_sizes": (64, 64), "batch_size": 64, "torch_threads": 1},
    seeds=(0, 1, 2),
    bound=-200.0,
)
PRODUCTION = Guard(
    "production",
    {
        "total_timesteps": 6_000,
        "matmul_precision": "bf16",
        "step_compiler": "inductor",
        "torch_threads": 1,
    },
    seeds=(0, 1),
    bound=-200.0,
)
GUARDS = {guard.name: guard for guard in (FAST, PRODUCTION)}
SUITE_DEFECTS = (
    "alpha gradient sign flipped",
    "entropy term sign flipped",
    "tau = 1.0",
    "replay samples only the newest row",
    "time limit stored as terminal",
    "target taken at obs, not next_obs",
    "update squashes its action twice",
    "evaluation sends the squashed action",
)
"""The defects the suite injects into `FAST`: one per place. "replay stores obs as next_obs"
feeds the step what "target taken at obs" does, so only `--defects` runs it."""
T = TypeVar("T")
PROCESSES = 2
"""Seeds trained at once, one torch thread each: one per core of the CI box."""


@dataclass(frozen=True)
class GuardResult:
    """Mean eval return per trained seed; the verdict is on their median."""

    returns: dict[int, float]
    bound: float

    @property
    def median(self) -> float:
        return statistics.median(self.returns.values())

    @property
    def passed(self) -> bool:
        return self.median >= self.bound


def guarded_return(seed: int, guard: Guard = FAST, **overrides: object) -> float:
    """Mean deterministic return on the eval seeds after `guard`'s training of `seed`, through
    the evaluation the pipeline's gate runs (rl_core/evaluation/episodes.py)."""
    config = SACConfig(**{**guard.config, "seed": seed, **overrides})
    actor = train(config, show_progress=False).agent.actor
    return episodes.evaluate(episodes.actor_policy(actor), config.env, config.eval_seeds).mean


def run_guard(guard: Guard = FAST, defect: str | None = None, **overrides: object) -> GuardResult:
    """Train `guard`'s seeds in order, stopping once a majority has decided the median's side
    of its bound.

    Each round trains, in parallel, only seeds that training one by one would reach too: the
    fewest that could still make a majority. The seeds trained, and so the verdict, are those
    of a sequential run whatever the timing; `defect` names an entry of DEFECTS to inject.
    """
    returns: dict[int, float] = {}
    work = partial(_guarded_return_with, guard)
    with _pool() as pool:
        while needed := _seeds_to_decide(returns, len(guard.seeds), guard.bound):
            batch = guard.seeds[len(returns) : len(returns) + needed]
            returns |= _train(pool, batch, defect, overrides, work)
    return GuardResult(returns, guard.bound)


def _seeds_to_decide(returns: dict[int, float], total: int, bound: float) -> int:
    """How many more seeds (of `total`) certainly come before a majority can decide: 0 when
    one has, or when every seed is trained."""
    majority = total // 2 + 1
    above = sum(r >= bound for r in returns.values())
    agreeing = max(above, len(returns) - above)
    return 0 if agreeing >= majority else min(majority - agreeing, total - len(returns))


def _pool(processes: int | None = None) -> ProcessPoolExecutor:
    """Fresh interpreters ('spawn'): after a fork, torch's OpenMP thread pool can hang."""
    spawn = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(processes or PROCESSES, mp_context=spawn)


Work = Callable[[str | None, dict[str, object], int], T]
"""What a pool process does for one seed, given the defect to inject and config overrides."""


def _train(
    pool: Executor,
    seeds: Sequence[int],
    defect: str | None,
    overrides: dict[str, object],
    work: Work[T],
) -> dict[int, T]:
    """`work` per seed, each in one of the pool's processes."""
    returns = pool.map(partial(work, defect, overrides), seeds)
    return dict(zip(seeds, returns, strict=True))


Row = tuple[str | None, dict[str, object]]
"""A defect to inject (None: healthy) and config overrides."""


def run_rows(
    rows: dict[str, Row], seeds: Sequence[int], work: Work[T], processes: int | None = None
) -> Iterator[tuple[str, dict[int, T], float]]:
    """Label, `work` per seed and seconds, row after row, each row in a pool of its own.

    A process scripts SAC's step once and keeps it (rl_core/sac/step_compiler.py): a process that
    ran one defect would run it again under the next row's name. Fresh processes per row make
    each row run its own defect."""
    for label, (defect, overrides) in rows.items():
        start = time.perf_counter()
        with _pool(processes) as pool:
            results = _train(pool, seeds, defect, overrides, work)
        yield label, results, time.perf_counter() - start


def _guarded_return_with(
    guard: Guard, defect: str | None, overrides: dict[str, object], seed: int
) -> float:
    """guarded_return(seed) with the named defect injected here, in the training process."""
    with (DEFECTS[defect] if defect else HEALTHY).injected() as defect_overrides:
        return guarded_return(seed, guard, **overrides, **defect_overrides)


def one_update(defect: str | None, overrides: dict[str, object], seed: int) -> dict[str, float]:
    """What one gradient step with `defect` injected does to a fixed agent and batch: the move
    of log alpha and a sum over the networks. Cheap evidence of which defect a process ran."""
    with (DEFECTS[defect] if defect else HEALTHY).injected() as defect_overrides:
        config = SACConfig(**{**FAST.config, "seed": seed, **overrides, **defect_overrides})
        torch.manual_seed(seed)
        agent = SAC(config, 3, 1, np.array([-2.0]), np.array([2.0]))
        buffer = ReplayBuffer(256, 3, 1)
        rows = np.random.default_rng(seed)
        for _ in range(buffer.capacity):
            buffer.add(
                rows.normal(size=3),
                rows.uniform(-1, 1, 1),
                rows.normal(),
                rows.normal(size=3),
                False,
            )
        before = agent.log_alpha.item()
        agent.update(buffer.sample(config.batch_size, np.random.default_rng(seed)))
    networks = (agent.actor, agent.critic, agent.critic_target)
    weights = sum(float(p.detach().double().sum()) for net in networks for p in net.parameters())
    return {"log_alpha_move": agent.log_alpha.item() - before, "weights": weights}


def _print_row(label: str, result: GuardResult, seconds: float) -> None:
    per_seed = "  ".join(f"s{seed} {value:8.1f}" for seed, value in result.returns.items())
    verdict = "passes" if result.passed else "FAILS"
    print(f"{label:<36} {per_seed}  median {result.median:8.1f}  {verdict}  ({seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guard", choices=list(GUARDS), default=FAST.name)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "ieee"])
    parser.add_argument(
        "--defects", nargs="*", choices=list(DEFECTS), help="inject these (none named: all)"
    )
    parser.add_argument("--processes", type=int, default=PROCESSES, help="seeds at once")
    args = parser.parse_args()
    guard = GUARDS[args.guard]
    print(f"CPU {cpu.model()} flags {' '.join(cpu.kernel_flags())}")
    print(f"{guard.name} guard {guard.config}; bound: median >= {guard.bound}", flush=True)
    rows: dict[str, Row]
    if args.defects is not None:
        rows = {name: (name, {}) for name in args.defects or DEFECTS}
    else:
        rows = {f"healthy, {p}": (None, {"matmul_precision": p}) for p in args.precisions}
    work = partial(_guarded_return_with, guard)
    for label, returns, seconds in run_rows(rows, args.seeds, work, args.processes):
        _print_row(label, GuardResult(returns, guard.bound), seconds)


if __name__ == "__main__":
    main()
