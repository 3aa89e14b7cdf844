"""The promotion rule on its own: the gate's reasons, and the paired non-inferiority test
against the champion (episode i of both policies on the same env seed)."""

import re

import numpy as np
import pytest

from rlops_airflow.promotion import Candidate, ChampionScore, Thresholds, decide

GATE = Thresholds(min_reward=-250, min_speedup=1.5)
SEEDS = 10
# A champion's episodes on ten seeds: some starts are hard, some easy (Pendulum-like spread).
CHAMPION_RETURNS = list(np.random.default_rng(0).normal(-170.0, 60.0, SEEDS))


def _shifted(shift: float, noise: float = 0.0, seed: int = 1) -> list[float]:
    """The champion's episodes moved by `shift`, plus per-episode noise of scale `noise`."""
    jitter = np.random.default_rng(seed).normal(0.0, noise, SEEDS) if noise else np.zeros(SEEDS)
    return list(np.add(CHAMPION_RETURNS, shift) + jitter)


def test_passing_candidate_is_promoted() -> None:
    decision = decide(Candidate("3", [-180.0] * SEEDS, speedup=2.1), GATE, champion=None)
    assert decision.promote
    assert decision.outcome == "promoted"


def test_each_failed_check_is_a_reason_and_the_reward_is_stated_with_its_interval() -> None:
    decision = decide(Candidate("3", [-412.0] * SEEDS, speedup=1.2), GATE, champion=None)
    assert not decision.promote
    assert decision.outcome == (
        "rejected: reward -412.0 [-412.0, -412.0] (95% CI) < -250; speedup x1.20 < x1.5"
    )
    spread = decide(Candidate("3", list(np.linspace(-500, -300, SEEDS)), 2.0), GATE, None)
    low, high = map(float, spread.reasons[0].split("[")[1].split("]")[0].split(", "))
    assert low < -400.0 < high  # the mean, inside an interval of real width


def test_pairing_sees_a_consistent_gain_that_the_spread_of_seeds_would_hide() -> None:
    """Two points apart on every seed, with seeds 60 apart: paired, that is certain."""
    champion = ChampionScore("2", CHAMPION_RETURNS)
    assert decide(Candidate("3", _shifted(+2.0), 2.0), GATE, champion).promote
    assert not decide(Candidate("3", _shifted(-2.0), 2.0), GATE, champion).promote


def test_clearly_worse_than_the_champion_is_rejected_quoting_the_interval() -> None:
    champion = ChampionScore("2", CHAMPION_RETURNS)
    lenient = Thresholds(-1e9, 1.5, noninferiority_margin=0.05)
    decision = decide(Candidate("3", _shifted(-30.0, noise=5.0), 2.0), lenient, champion)
    assert not decision.promote
    (reason,) = decision.reasons
    champion_mean = float(np.mean(CHAMPION_RETURNS))
    assert re.fullmatch(
        rf"return vs champion v2 \({champion_mean:.1f}\): mean paired difference "
        r"-(2\d|3\d)\.\d \[-\d+\.\d, -\d+\.\d\] \(95% CI\), "
        rf"low end below {-0.05 * abs(champion_mean):.1f} \(margin 0.05 of its magnitude\)",
        reason,
    )


def test_the_low_end_decides_not_the_mean() -> None:
    """Shifted 5 below the champion plus per-episode noise of 40: its interval reaches far
    below 0, so it stays out; a wide margin (or a wide one at a lower confidence) lets it in."""
    champion = ChampionScore("2", CHAMPION_RETURNS)
    noisy = Candidate("3", _shifted(-5.0, noise=40.0, seed=3), 2.0)
    assert not decide(noisy, Thresholds(-1e9, 1.5), champion).promote
    assert decide(noisy, Thresholds(-1e9, 1.5, noninferiority_margin=0.5), champion).promote
    assert decide(
        noisy, Thresholds(-1e9, 1.5, confidence=0.5, noninferiority_margin=0.3), champion
    ).promote


def test_champion_comparison_can_be_switched_off() -> None:
    champion = ChampionScore("2", CHAMPION_RETURNS)
    lenient = Thresholds(-1e9, 1.5, compare_with_champion=False)
    assert decide(Candidate("3", _shifted(-100.0), 2.0), lenient, champion).promote


def test_the_champion_is_never_compared_with_itself() -> None:
    champion = ChampionScore("2", CHAMPION_RETURNS)
    assert decide(Candidate("2", _shifted(-100.0), 2.0), Thresholds(-1e9, 1.5), champion).promote


def test_episodes_must_pair_up() -> None:
    with pytest.raises(ValueError, match="one episode each per seed: 9 vs 10"):
        decide(Candidate("3", [-170.0] * 9, 2.0), GATE, ChampionScore("2", CHAMPION_RETURNS))


def test_by_default_the_candidate_must_be_shown_at_least_as_good() -> None:
    champion = ChampionScore("2", CHAMPION_RETURNS)
    assert GATE.noninferiority_margin == 0.0
    equal = decide(Candidate("3", _shifted(0.0, noise=3.0), 2.0), GATE, champion)
    assert not equal.promote  # no evidence either way: the champion stays
    assert equal.reasons[0].endswith("low end below 0.0 (margin 0 of its magnitude)")
    assert decide(Candidate("3", _shifted(+5.0, noise=3.0), 2.0), GATE, champion).promote


def test_boundaries_pass() -> None:
    assert decide(Candidate("1", [-250.0] * SEEDS, speedup=1.5), GATE, None).promote
    champion = ChampionScore("2", [-200.0] * SEEDS)
    assert decide(Candidate("3", [-200.0] * SEEDS, 2.0), GATE, champion).promote
    lenient = Thresholds(-250, 1.5, noninferiority_margin=0.05)  # 5% of 200 = 10
    assert decide(Candidate("3", [-210.0] * SEEDS, 2.0), lenient, champion).promote
    assert not decide(Candidate("3", [-210.01] * SEEDS, 2.0), lenient, champion).promote


def test_the_gate_takes_the_mean_exactly_as_evaluate_does() -> None:
    """Summed in order, some returns average a few 1e-14 lower than numpy's pairwise mean,
    which `evaluate` reports and tags as passed: the promote task must not fail that number."""
    rng = np.random.default_rng(0)
    while True:  # such samples are common: about one in three
        returns = list(rng.normal(-170, 60, 10))
        mean = float(np.asarray(returns).mean())
        if sum(returns) / len(returns) < mean:
            break
    gate = Thresholds(min_reward=mean, min_speedup=1.5)
    assert decide(Candidate("1", returns, 2.0), gate, None).promote
