"""A refactor that silently changes learning fails here, on every machine with a recorded
fingerprint (the NFace practice).

Bit-identical returns are only promised where CPU kernels, library versions, threads and
precision all match, so reference.json keeps one record per numeric fingerprint and this test
replays the record of the machine it runs on. A machine with no record yet is skipped with
the command that adds one; whether SAC still *learns* there is the learning guard's job
(test_learning_guard.py), which holds on any CPU.
"""

from __future__ import annotations

import json

import pytest

from tests.regression.make_reference import (
    REFERENCE,
    evaluation_returns,
    fingerprint,
    recorded_returns,
)


@pytest.mark.slow
def test_short_training_replays_this_machines_reference_exactly() -> None:
    machine = fingerprint()
    expected = recorded_returns(json.loads(REFERENCE.read_text())["records"], machine)
    if expected is None:
        pytest.skip(
            f"no reference recorded for {machine}; add one with "
            "`.venv/bin/python tests/regression/make_reference.py`"
        )
    assert evaluation_returns() == expected
