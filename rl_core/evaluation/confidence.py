"""How sure a mean return is: bootstrap confidence intervals over evaluation episodes.

A mean over ten episodes moves by tens of return units from one set of env seeds to another
(Pendulum: a standard deviation of about 25), so decisions compare intervals, not points: the
interval of one policy's mean return, and the interval of the mean *paired* difference between
two policies played on the same env seeds, where pairing removes what the seeds alone explain
(a hard start is hard for both). Samples that share no seeds (served traffic, a monitor's
fresh seeds against its reference) compare by the interval of the difference of their means.
Intervals are BCa bootstrap intervals (scipy.stats.bootstrap)
from a fixed random stream, so a retried task computes the same interval and takes the same
decision.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided confidence interval."""

    mean: float
    low: float
    high: float
    confidence: float

    def __str__(self) -> str:
        return f"{self.mean:.1f} [{self.low:.1f}, {self.high:.1f}] ({self.confidence:.0%} CI)"


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of `values` with its BCa bootstrap interval.

    One value, or values equal up to rounding, have no spread to resample: the interval is
    the point. Where BCa is undefined (its jackknife has no spread), the percentile interval.
    """
    data = _finite(values)
    return _interval(float(data.mean()), confidence, data)


def _finite(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0 or not np.isfinite(data).all():
        raise ValueError(f"need one or more finite values, not {list(values)!r}")
    return data


def _constant(data: np.ndarray) -> bool:
    """One value, or values equal up to rounding (e.g. x - 40 minus x, in floating point)."""
    return data.size == 1 or bool(np.ptp(data) <= 1e-9 * max(1.0, float(np.abs(data).max())))


def _interval(point: float, confidence: float, data: np.ndarray) -> Interval:
    """`point` with the BCa interval of `data`'s mean; the point itself when nothing varies,
    the percentile interval where BCa is undefined."""
    _check_confidence(confidence)
    if _constant(data):
        return Interval(point, point, point, confidence)
    low, high = _bootstrap(data, confidence, "BCa")
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa's acceleration is 0/0 here
        low, high = _bootstrap(data, confidence, "percentile")
    return Interval(point, low, high, confidence)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), not {confidence}")


def _bootstrap(data: np.ndarray, confidence: float, method: str) -> tuple[float, float]:
    from scipy.stats import bootstrap  # here: the DAG file imports promotion, which imports this

    with warnings.catch_warnings():  # a degenerate BCa says so with NaN, checked by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        result = bootstrap(
            (data,),
            np.mean,
            confidence_level=confidence,
            n_resamples=N_RESAMPLES,
            method=method,
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_difference(
    values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> Interval:
    """Mean of `values[i] - baseline[i]` (episode i of both on the same env seed), with its
    interval."""
    if len(values) != len(baseline):
        raise ValueError(
            f"paired returns need one episode each per seed: {len(values)} vs {len(baseline)}"
        )
    return mean_interval(np.subtract(values, baseline), confidence)


def unpaired_difference(
    values: Sequence[float], baseline: Sequence[float], confidence: float = 0.95
) -> Interval:
    """Mean of `values` minus mean of `baseline`, two samples of different episodes, with
    Welch's interval of that difference.

    Unpaired samples here are hundreds of episodes (a monitor check, served traffic), where
    the means are close to normal and Welch's interval is accurate; it costs microseconds where
    a BCa bootstrap over 1,200 episodes costs a second, and the drift benchmark replays
    thousands of checks.
    """
    from scipy.stats import ttest_ind

    _check_confidence(confidence)
    data, reference = _finite(values), _finite(baseline)
    if min(data.size, reference.size) < 2:
        raise ValueError(
            f"an unpaired difference needs two or more values in each sample, not "
            f"{data.size} and {reference.size}"
        )
    gap = float(data.mean() - reference.mean())
    if _constant(data) and _constant(reference):
        return Interval(gap, gap, gap, confidence)
    with warnings.catch_warnings():  # one constant sample: scipy warns, the interval is right
        warnings.simplefilter("ignore", RuntimeWarning)
        test = ttest_ind(data, reference, equal_var=False)
    interval = test.confidence_interval(confidence)
    return Interval(gap, float(interval.low), float(interval.high), confidence)
