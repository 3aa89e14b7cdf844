"""SAC still learns, on any CPU and precision; and the guard that says so catches real bugs.

See learning_guard.py for why the guard trains past the learning transition and takes a median
over seeds. The defect tests inject one real bug each (by name, into every training process)
and demand that the same guard fails: a guard that passes a broken SAC proves nothing.
"""

from __future__ import annotations

import pytest

from tests.regression.learning_guard import BOUND, DEFECTS, run_guard


@pytest.mark.slow
def test_sac_learns_pendulum_past_the_transition() -> None:
    result = run_guard()
    assert result.passed, f"median return {result.median:.1f} < {BOUND} over {result.returns}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DEFECTS))
def test_the_guard_fails_on_an_injected_defect(name: str) -> None:
    result = run_guard(defect=name)
    assert not result.passed, f"{name}: median {result.median:.1f} >= {BOUND}, {result.returns}"
