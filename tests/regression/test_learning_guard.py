"""SAC still learns, on any CPU and precision; and the guards that say so catch real bugs.

See learning_guard.py for why a guard trains past the learning transition and takes a median
over seeds, and for the measurements its bounds come from. The defect tests inject one real
bug each (by name, into every training process) and demand that the same guard fails: a guard
that passes a broken SAC proves nothing.
"""

from __future__ import annotations

import pytest

from tests.regression.learning_guard import (
    FAST,
    PRODUCTION,
    SUITE_DEFECTS,
    Guard,
    one_update,
    run_guard,
    run_rows,
)


@pytest.mark.slow
@pytest.mark.parametrize("guard", [FAST, PRODUCTION], ids=lambda guard: guard.name)
def test_sac_learns_pendulum_past_the_transition(guard: Guard) -> None:
    result = run_guard(guard)
    assert result.passed, f"median return {result.median:.1f} < {guard.bound} over {result.returns}"


@pytest.mark.slow
@pytest.mark.parametrize("name", SUITE_DEFECTS)
def test_the_guard_fails_on_an_injected_defect(name: str) -> None:
    result = run_guard(FAST, defect=name)
    assert not result.passed, (
        f"{name}: median {result.median:.1f} >= {FAST.bound}, {result.returns}"
    )


def test_defect_rows_in_sequence_each_run_their_own_defect() -> None:
    """`--defects` runs rows one after another: the second row must not run the first row's
    step, which a process compiles once and keeps. One update per row shows which ran."""
    alpha, entropy = "alpha gradient sign flipped", "entropy term sign flipped"
    rows = {name: (name, {}) for name in (alpha, entropy)}
    ran = {label: results[0] for label, results, _ in run_rows(rows, seeds=[0], work=one_update)}
    healthy = one_update(None, {}, 0)

    assert ran[alpha]["log_alpha_move"] * healthy["log_alpha_move"] < 0  # alpha moves backwards
    assert ran[entropy]["log_alpha_move"] == healthy["log_alpha_move"]  # not the alpha defect
    assert ran[entropy]["weights"] != healthy["weights"]  # but its own: the actor's objective
