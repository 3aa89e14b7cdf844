"""benchmarks/profile_update.py attributes the update's time to the phases SAC.update names."""

from __future__ import annotations

import pytest

from benchmarks.profile_update import PARTS, UPDATE_PHASES, Loop, update_shares
from rl_core.common.config import build_config


def test_update_time_is_split_into_every_phase_and_part():
    config = build_config(
        {
            "hidden_sizes": [16, 16],
            "batch_size": 16,
            "torch_threads": 1,
            "step_compiler": "torchscript",  # inductor's fused graph has no phases to split
        }
    )
    loop = Loop.start(config, warmup=64)

    shares = update_shares(loop, steps=5)

    assert {phase for phase, _ in shares} == set(UPDATE_PHASES.values())
    for phase in ("critic", "actor + alpha"):  # both backpropagate and take an Adam step
        assert {(phase, part) for part in PARTS} <= shares.keys()
    assert all(share >= 0 for share in shares.values())
    assert sum(shares.values()) == pytest.approx(1.0)
