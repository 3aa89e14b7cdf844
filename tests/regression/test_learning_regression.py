"""A refactor that silently changes learning fails here (the NFace practice).

A short fixed-seed training must give the returns recorded in reference.json (see
make_reference.py for how it was produced). On the machine fingerprint recorded there the
returns must be identical; on another CPU or library version floating-point rounding differs
and chaotic RL dynamics amplify it, so only the mean is held to a tolerance.
"""

from __future__ import annotations

import json

import pytest

from rl_core.config import SACConfig
from rl_core.evaluation import evaluate
from rl_core.training import train
from tests.regression.make_reference import REFERENCE, fingerprint

ELSEWHERE_TOLERANCE = 0.25
"""Relative tolerance on the mean return when the fingerprint differs."""


@pytest.mark.slow
def test_short_training_matches_the_committed_reference() -> None:
    reference = json.loads(REFERENCE.read_text())
    config = SACConfig(**reference["config"])
    agent = train(config, show_progress=False).agent
    result = evaluate(agent.act, config.env_id, config.eval_seeds)
    if fingerprint(config) == reference["fingerprint"]:
        assert result.returns == reference["returns"]
    else:
        expected = reference["mean"]
        assert result.mean == pytest.approx(expected, rel=ELSEWHERE_TOLERANCE)
