"""Bootstrap intervals: they contain the mean, narrow with more episodes, pair by seed, and
are the same on every call (a retried task decides the same)."""

import numpy as np
import pytest

from rl_core.evaluation.confidence import (
    Interval,
    mean_interval,
    paired_difference,
    unpaired_difference,
)


def test_the_interval_holds_the_mean_and_narrows_with_more_episodes() -> None:
    rng = np.random.default_rng(0)
    few, many = rng.normal(-150, 90, 10), rng.normal(-150, 90, 400)
    short, long = mean_interval(few), mean_interval(many)
    assert short.low < short.mean < short.high and long.low < long.mean < long.high
    assert long.high - long.low < (short.high - short.low) / 3
    assert long.low < -150 < long.high


def test_a_higher_confidence_gives_a_wider_interval() -> None:
    values = np.random.default_rng(1).normal(0, 1, 30)
    narrow, wide = mean_interval(values, 0.8), mean_interval(values, 0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_the_same_data_gives_the_same_interval() -> None:
    values = list(np.random.default_rng(2).normal(0, 1, 12))
    assert mean_interval(values) == mean_interval(values)


def test_no_spread_is_a_point_even_after_rounding() -> None:
    values = [-170.3, 12.9, -55.1]
    shifted = [v - 40.0 for v in values]  # differences of -40 +- a rounding error
    assert paired_difference(shifted, values).low == pytest.approx(-40.0)
    difference = paired_difference(shifted, values)
    assert difference.low == difference.mean == difference.high
    one = mean_interval([3.0])
    assert (one.low, one.mean, one.high) == (3.0, 3.0, 3.0)


def test_pairing_removes_what_the_seeds_explain() -> None:
    seeds_effect = np.random.default_rng(3).normal(-150, 60, 10)
    better = seeds_effect + 2.0 + np.random.default_rng(4).normal(0, 0.5, 10)
    paired = paired_difference(better, seeds_effect)
    assert 0.0 < paired.low < 2.0 < paired.high < 4.0


def test_str_quotes_the_interval() -> None:
    assert str(mean_interval([1.0, 1.0])) == "1.0 [1.0, 1.0] (95% CI)"


@pytest.mark.parametrize(
    ("values", "confidence", "message"),
    [
        ([], 0.95, "need one or more finite values"),
        ([1.0, float("nan")], 0.95, "need one or more finite values"),
        ([1.0, 2.0], 1.0, "confidence must be between 0 and 1"),
    ],
)
def test_bad_input_is_refused(values, confidence, message) -> None:
    with pytest.raises(ValueError, match=message):
        mean_interval(values, confidence)


def test_unpaired_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one episode each per seed: 2 vs 3"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])


def test_the_unpaired_interval_is_welchs() -> None:
    from scipy.stats import t

    a = np.array([-140.0, -160.0, -150.0, -155.0, -145.0, -170.0])
    b = np.array([-120.0, -130.0, -125.0, -110.0])
    interval = unpaired_difference(a, b, 0.9)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = t.ppf(0.95, dof) * np.sqrt(va + vb)
    gap = a.mean() - b.mean()
    assert interval.mean == pytest.approx(gap)
    assert (interval.low, interval.high) == pytest.approx((gap - half, gap + half))


def test_unpaired_samples_without_spread_give_the_point() -> None:
    assert unpaired_difference([3.0, 3.0], [1.0, 1.0]) == Interval(2.0, 2.0, 2.0, 0.95)


@pytest.mark.parametrize(
    ("values", "baseline", "message"),
    [
        ([1.0], [1.0, 2.0], "two or more values in each sample, not 1 and 2"),
        ([1.0, float("nan")], [1.0, 2.0], "finite values"),
        ([1.0, 2.0], [1.0, 2.0, 3.0], None),
    ],
)
def test_unpaired_samples_need_two_finite_values_each(values, baseline, message) -> None:
    if message is None:
        assert unpaired_difference(values, baseline).mean == pytest.approx(-0.5)
        return
    with pytest.raises(ValueError, match=message):
        unpaired_difference(values, baseline)
