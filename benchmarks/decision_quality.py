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
  and 25% worse than the champion are (the degraded pools below), how often one 10% better
  is, and how often a clearly better policy is promoted over a worse one. Before 0.2, the
  rule was "mean >= champion's mean" ("old"); beside it the paired rule at 95% for each
  non-inferiority margin of `--margins`. Then, at margin 0, the same rates for each number of
  eval episodes of `--episode-grid`, with what the evaluation costs in time.
- **Drift**: a champion checked hourly on `--check-episodes` fresh episodes (drawn with
  replacement from its pool). The old rule (before 0.2): online mean below the return
  recorded at registration on a block of eval seeds minus `--tolerance` of its magnitude, one
  check. The new one (`rlops_airflow.drift`): the interval of (online - reference) entirely
  below minus the tolerance, the reference being `--reference-episodes` simulator episodes,
  `--breaches` consecutive breaches to roll back. Healthy: the share of checks that roll it
  back. Degraded by Gaussian action noise to lose 10% and 25% of its return's magnitude: the
  share rolled back within 3 checks and the mean checks to the rollback.

Prints the CPU next to the figures; the rates do not depend on it, the speed does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import numpy as np

from rl_core.common import cpu
from rl_core.common.config import build_config
from rl_core.evaluation.episodes import Policy, actor_policy, evaluate
from rl_core.run.training import train
from rlops_airflow.drift import DriftRule, extend_streak, judge
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
    seconds_per_episode: float

    @property
    def mean(self) -> float:
        return float(self.returns.mean())


def _train(args: argparse.Namespace, seed: int, steps: int) -> Policy:
    """The env's preset trained for `steps`; a budget shorter than the preset's warm-up
    (LunarLander: 10,000 random steps) warms up for half of it instead."""
    values = {"env_id": args.env, "total_timesteps": steps, "seed": seed}
    if build_config({"env_id": args.env}).learning_starts >= steps:
        values["learning_starts"] = steps // 2
    config = build_config(values)
    result = train(config, show_progress=False)
    return actor_policy(result.agent.actor)


def _pool(name: str, policy: Policy, args: argparse.Namespace) -> Pool:
    seeds = range(args.pool_start, args.pool_start + args.pool)
    started = time.perf_counter()
    returns = np.asarray(evaluate(policy, args.env, seeds).returns)
    return Pool(name, returns, (time.perf_counter() - started) / args.pool)


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
    pool = _pool(f"champion, noise {sigma:.3f}", _noisy(champion, sigma, 1, *bounds), args)
    if abs(pool.mean - target) > 0.5 * loss * abs(healthy.mean):
        print(
            f"  WARNING: no action noise costs the champion {loss:.0%}: noise {sigma:.3f} gives "
            f"{pool.mean:.1f}, not {target:.1f}; the {loss:.0%} rows below do not measure that"
        )
    return pool


def _blocks(rng: np.random.Generator, pool_size: int, size: int, n: int) -> list[slice]:
    starts = rng.integers(0, pool_size - size, n)
    return [slice(int(s), int(s) + size) for s in starts]


def promotion_rates(
    champion: Pool, candidate: Pool, args: argparse.Namespace, episodes: int
) -> list[float]:
    """Share of blocks of `episodes` eval seeds on which the old rule, then the paired rule
    at each of `--margins`, promote the candidate."""
    rng = np.random.default_rng(10)
    blocks = _blocks(rng, args.pool, episodes, args.trials)
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


def _todays_check(recorded: float, online: float, tolerance: float) -> bool:
    """The drift rule before 0.2: one check's mean against the registration figure."""
    return online < recorded - tolerance * abs(recorded)


def _draw(pool: Pool, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` fresh episodes of the pool's policy: drawn with replacement from its returns."""
    return pool.returns[rng.integers(0, pool.returns.size, n)]


def _followed(found: list[bool]) -> dict[str, float]:
    """Rollback figures of one followed champion: `found[i]` is whether check i+1 rolls back."""
    first = found.index(True) + 1 if any(found) else HORIZON + 1
    return {"checks": min(first, HORIZON), "rolled_back": any(found), "first": first}


def drift_rates(
    healthy: Pool, online: Pool, args: argparse.Namespace, new_rule: bool
) -> dict[str, float]:
    """False-rollback share (online = healthy) or detection figures (online = degraded), for
    the old rule or the new one; each champion is followed until its rollback or `HORIZON`."""
    rng = np.random.default_rng(20)
    rule = DriftRule(args.tolerance, 0.95, args.breaches)
    followed = []
    for _ in range(max(1, args.trials // 2)):
        if new_rule:
            reference = _draw(healthy, args.reference_episodes, rng)  # simulator reference
            streak: tuple[str, ...] = ()
            found = []
            for hour in range(HORIZON):
                verdict = judge(_draw(online, args.check_episodes, rng), reference, rule)
                streak = extend_streak(streak, verdict.breach, str(hour))
                found.append(len(streak) >= args.breaches)
        else:
            recorded = float(_draw(healthy, args.eval_episodes, rng).mean())
            online_means = [_draw(online, args.check_episodes, rng).mean() for _ in range(HORIZON)]
            found = [_todays_check(recorded, float(m), args.tolerance) for m in online_means]
        followed.append(_followed(found))
    checks = sum(f["checks"] for f in followed)
    return {
        "per_check": sum(f["rolled_back"] for f in followed) / checks,
        "checks": checks,
        "within": statistics.mean(f["first"] <= DETECT_WITHIN for f in followed),
        "mean_checks": statistics.mean(f["first"] for f in followed),
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
    parser.add_argument("--reference-episodes", type=int, default=1_000, help="simulator reference")
    parser.add_argument("--breaches", type=int, default=2, help="breaches_to_rollback")
    parser.add_argument("--trials", type=int, default=480, help="decisions per figure")
    parser.add_argument(
        "--margins", type=float, nargs="+", default=[0.0, 0.02, 0.05], help="noninferiority"
    )
    parser.add_argument(
        "--episode-grid", type=int, nargs="+", default=[10, 20, 50], help="eval episodes"
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
        print(
            f"  {pool.name:<32} mean {pool.mean:9.1f}  std {pool.returns.std():7.1f}  "
            f"{pool.seconds_per_episode * 1000:6.1f} ms/episode"
        )

    cases = {
        "equal retrain over the champion": (healthy, retrain),
        **{f"{loss:.0%} worse over the champion": (healthy, degraded[loss]) for loss in degraded},
        "10% better over the champion": (degraded[DEGRADATIONS[0]], healthy),
        "clearly better over a worse champion": (worse, healthy),
    }
    print(f"\nPromotion ({args.trials} blocks of {args.eval_episodes} eval seeds)")
    columns = ["old", *(f"m={m:g}" for m in args.margins)]
    print(f"{'case':<40}" + "".join(f"{c:>9}" for c in columns) + "   (new: paired, margin m)")
    for label, (held, challenger) in cases.items():
        rates = promotion_rates(held, challenger, args, args.eval_episodes)
        print(f"{label:<40}" + "".join(f"{r:>9.1%}" for r in rates))

    print(f"\nPromotion by eval episodes (new rule, margin {args.margins[0]:g})")
    print(f"{'case':<40}" + "".join(f"{n:>9}" for n in args.episode_grid))
    for label, (held, challenger) in cases.items():
        rates = [promotion_rates(held, challenger, args, n)[1] for n in args.episode_grid]
        print(f"{label:<40}" + "".join(f"{r:>9.1%}" for r in rates))
    per_episode = healthy.seconds_per_episode
    times = "".join(f"{2 * n * per_episode:>8.1f}s" for n in args.episode_grid)
    print(f"{'eval time, candidate + champion':<40}{times}")

    print(
        f"\nDrift guard: {args.check_episodes} episodes per check, tolerance {args.tolerance:g}; "
        f"old: one check against {args.eval_episodes} registration episodes; new: interval "
        f"against a {args.reference_episodes}-episode reference, {args.breaches} breaches"
    )
    print(f"{'':<48}{'old':>12}{'new':>12}")
    rates = {rule: drift_rates(healthy, healthy, args, rule) for rule in (False, True)}
    print(
        f"{'healthy: rolled back, share of checks':<48}"
        + "".join(f"{r['per_check']:>12.2%}" for r in rates.values())
    )
    print(f"{'  (checks)':<48}" + "".join(f"{r['checks']:>12}" for r in rates.values()))
    for loss, pool in degraded.items():
        rates = {rule: drift_rates(healthy, pool, args, rule) for rule in (False, True)}
        print(
            f"{f'{loss:.0%} worse: rolled back within {DETECT_WITHIN} checks':<48}"
            + "".join(f"{r['within']:>12.1%}" for r in rates.values())
        )
        print(
            f"{f'{loss:.0%} worse: mean checks to rollback':<48}"
            + "".join(f"{r['mean_checks']:>12.2f}" for r in rates.values())
        )
    print(f"(never within {HORIZON} checks counts as {HORIZON + 1})")
    print(f"\n{time.perf_counter() - started:.0f} s")


def _action_bounds(env_id: str) -> tuple[float, float]:
    from rl_core.envs.spec import make_env

    env = make_env(env_id)
    space = env.action_space
    env.close()
    return float(space.low.min()), float(space.high.max())


if __name__ == "__main__":
    main()
