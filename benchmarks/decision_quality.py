"""How often rlops' champion decisions are right: promotion and drift, on real policies.

    .venv/bin/python benchmarks/decision_quality.py                       # Pendulum-v1, 6k steps
    .venv/bin/python benchmarks/decision_quality.py --env PointReach-v0 --steps 6000

Trains three policies of the env's config (RL-Zoo preset applied): two seeds with the full
budget (a champion and an equal retrain) and one with a quarter of it (a clearly worse one).
Plays each once on every env seed of a pool, so every policy has a return per seed, then
replays decisions by drawing seeds from the pool, with the product's own rule functions:

- **Promotion** (`rlops_airflow.promotion.decide`), on random blocks of `--eval-episodes`
  consecutive eval seeds, as runs with another `eval_seed_start` would see them: how often a
  retrain of the same config is promoted over an equal champion, how often candidates 10%
  and 25% worse than the champion are (the degraded pools below), and how often a clearly
  better policy is promoted over a worse one. Today's rule (mean >= champion's mean) beside
  the paired rule at 95% for each non-inferiority margin of `--margins`.
- **Drift** (`rlops_airflow.monitoring.judge`): a champion recorded at registration on a
  random block of eval seeds, checked hourly on `--check-episodes` fresh seeds. Healthy: the
  share of checks that would roll it back. Degraded by Gaussian action noise to lose 10% and
  25% of its return's magnitude: the share detected within 3 checks and the mean checks to
  the first detection.

Prints the CPU next to the figures; the rates do not depend on it, the speed does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

from rl_core import cpu
from rl_core.config import build_config
from rl_core.evaluation import Policy, actor_policy, evaluate
from rl_core.training import train
from rlops_airflow.monitoring import OnlineCheck, judge
from rlops_airflow.promotion import Candidate, ChampionScore, Thresholds, decide

DEGRADATIONS = (0.10, 0.25)
"""Fractions of the champion's return magnitude a degraded champion loses."""
DETECT_WITHIN = 3
HORIZON = 24
"""Checks (hours) a degraded champion is followed before it counts as never detected."""


@dataclass(frozen=True)
class Pool:
    """One policy's return on each env seed of the pool (index = seed - first seed)."""

    name: str
    returns: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.returns.mean())


def _train(args: argparse.Namespace, seed: int, steps: int) -> Policy:
    config = build_config({"env_id": args.env, "total_timesteps": steps, "seed": seed})
    result = train(config, show_progress=False)
    return actor_policy(result.agent.actor)


def _pool(name: str, policy: Policy, args: argparse.Namespace) -> Pool:
    seeds = range(args.pool_start, args.pool_start + args.pool)
    return Pool(name, np.asarray(evaluate(policy, args.env, seeds).returns))


def _noisy(policy: Policy, sigma: float, seed: int, low: float, high: float) -> Policy:
    """The policy with Gaussian action noise of scale `sigma` (a stand-in for drift)."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        action = policy(obs)
        return np.clip(action + rng.normal(0.0, sigma, action.shape), low, high).astype(np.float32)

    return act


def _degraded(
    champion: Policy, healthy: Pool, loss: float, args: argparse.Namespace, bounds: tuple
) -> Pool:
    """A pool of the champion with the action noise that costs `loss` of its return's
    magnitude, found by bisection on the first 100 seeds of the pool."""
    target = healthy.mean - loss * abs(healthy.mean)
    probe = range(args.pool_start, args.pool_start + 100)
    low, high = 0.0, float(bounds[1] - bounds[0])
    for _ in range(8):
        sigma = (low + high) / 2
        probe_mean = evaluate(_noisy(champion, sigma, 0, *bounds), args.env, probe).mean
        low, high = (sigma, high) if probe_mean > target else (low, sigma)
    sigma = (low + high) / 2
    return _pool(f"champion, noise {sigma:.3f}", _noisy(champion, sigma, 1, *bounds), args)


def _blocks(rng: np.random.Generator, pool_size: int, size: int, n: int) -> list[slice]:
    starts = rng.integers(0, pool_size - size, n)
    return [slice(int(s), int(s) + size) for s in starts]


def promotion_rates(champion: Pool, candidate: Pool, args: argparse.Namespace) -> list[float]:
    """Share of eval-seed blocks on which today's rule, then the paired rule at each of
    `--margins`, promote the candidate."""
    rng = np.random.default_rng(10)
    blocks = _blocks(rng, args.pool, args.eval_episodes, args.trials)
    promoted = np.zeros(1 + len(args.margins))
    for block in blocks:
        mine, theirs = candidate.returns[block], champion.returns[block]
        promoted[0] += mine.mean() >= theirs.mean()
        for i, margin in enumerate(args.margins, start=1):
            # only the champion comparison: reward and speed pass
            gate = Thresholds(-1e12, 0.0, noninferiority_margin=margin)
            scored = Candidate("2", list(mine), 2.0)
            promoted[i] += decide(scored, gate, ChampionScore("1", list(theirs))).promote
    return list(promoted / len(blocks))


def _checks(
    recorded: float, online: Pool, rng: np.random.Generator, args: argparse.Namespace
) -> list[bool]:
    """Whether each of `HORIZON` hourly checks on fresh seeds finds drift (today's rule)."""
    found = []
    for _ in range(HORIZON):
        seeds = rng.choice(args.pool, args.check_episodes, replace=False)
        check = OnlineCheck(
            "m", "1", recorded, float(online.returns[seeds].mean()), args.check_episodes, "-"
        )
        found.append(judge(check, args.tolerance).drifted)
    return found


def drift_rates(healthy: Pool, online: Pool, args: argparse.Namespace) -> dict[str, float]:
    """False-rollback share (online = healthy) or detection figures (online = degraded)."""
    rng = np.random.default_rng(20)
    registrations = max(1, args.trials // HORIZON)
    per_check, within, first = [], [], []
    for block in _blocks(rng, args.pool, args.eval_episodes, registrations):
        found = _checks(float(healthy.returns[block].mean()), online, rng, args)
        per_check += found
        within.append(any(found[:DETECT_WITHIN]))
        first.append(found.index(True) + 1 if any(found) else HORIZON + 1)
    return {
        "per_check": statistics.mean(per_check),
        "within": statistics.mean(within),
        "mean_checks": statistics.mean(first),
        "checks": len(per_check),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=6_000)
    parser.add_argument("--pool", type=int, default=1_000, help="env seeds each policy plays")
    parser.add_argument("--pool-start", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=10, help="the gate's episodes")
    parser.add_argument("--check-episodes", type=int, default=200, help="per monitor check")
    parser.add_argument("--tolerance", type=float, default=0.05, help="drift_tolerance")
    parser.add_argument("--trials", type=int, default=480, help="decisions per figure")
    parser.add_argument(
        "--margins", type=float, nargs="+", default=[0.0, 0.02, 0.05], help="noninferiority"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"{args.env}, {args.steps} training steps; CPU {cpu.model()} ({cpu.kernel_flags()})")

    champion = _train(args, 0, args.steps)
    healthy = _pool("champion (seed 0)", champion, args)
    retrain = _pool("retrain (seed 1)", _train(args, 1, args.steps), args)
    worse = _pool(
        f"worse (seed 2, {args.steps // 4} steps)", _train(args, 2, args.steps // 4), args
    )
    bounds = _action_bounds(args.env)
    degraded = {loss: _degraded(champion, healthy, loss, args, bounds) for loss in DEGRADATIONS}
    for pool in (healthy, retrain, worse, *degraded.values()):
        print(f"  {pool.name:<32} mean {pool.mean:9.1f}  std {pool.returns.std():7.1f}")

    print(f"\nPromotion ({args.trials} blocks of {args.eval_episodes} eval seeds)")
    columns = ["today", *(f"m={m:g}" for m in args.margins)]
    print(f"{'case':<40}" + "".join(f"{c:>9}" for c in columns) + "   (paired at margin m)")
    cases = {
        "equal retrain over the champion": (healthy, retrain),
        **{f"{loss:.0%} worse over the champion": (healthy, degraded[loss]) for loss in degraded},
        "clearly better over a worse champion": (worse, healthy),
    }
    for label, (held, challenger) in cases.items():
        rates = promotion_rates(held, challenger, args)
        print(f"{label:<40}" + "".join(f"{r:>9.1%}" for r in rates))

    print(
        f"\nDrift guard, today's rule (tolerance {args.tolerance:g}, "
        f"{args.check_episodes} episodes per check, recorded on {args.eval_episodes} seeds)"
    )
    false = drift_rates(healthy, healthy, args)
    print(
        f"  healthy champion: rolled back on {false['per_check']:.1%} of {false['checks']} checks"
    )
    for loss, pool in degraded.items():
        caught = drift_rates(healthy, pool, args)
        print(
            f"  {loss:.0%} worse: detected within {DETECT_WITHIN} checks in {caught['within']:.1%}"
            f", first detection after {caught['mean_checks']:.1f} checks on average "
            f"(never within {HORIZON} counts as {HORIZON + 1})"
        )
    print(f"\n{time.perf_counter() - started:.0f} s")


def _action_bounds(env_id: str) -> tuple[float, float]:
    from rl_core.envs import make_env

    env = make_env(env_id)
    space = env.action_space
    env.close()
    return float(space.low.min()), float(space.high.max())


if __name__ == "__main__":
    main()
