"""benchmarks/lockstep_loop.py feeds recorded draws into rlops' own training loop: the hooks
must reach it, and a draw at another step than the recording's must stop the run there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.lockstep_loop import ReplayedRngs
from benchmarks.lockstep_sb3 import LockstepMismatch, given_noise, rlops_order
from rl_core.common.config import build_config
from rl_core.common.tracking import NullTracker
from rl_core.run.training import _Run
from rl_core.sac import sac_step

WARMUP, STEPS, BATCH = 5, 8, 4


def tiny_run() -> _Run:
    config = build_config(
        {
            "env_id": "Pendulum-v1",
            "hidden_sizes": [8, 8],
            "batch_size": BATCH,
            "learning_starts": WARMUP,
            "total_timesteps": STEPS,
            "torch_threads": 1,
            "matmul_precision": "ieee",
            "step_compiler": "torchscript",
        }
    )
    run = _Run(config, NullTracker())
    run.agent._step = sac_step.gradient_step
    return run


def recorded_draws(first_update_after: int) -> tuple[list, list, list[torch.Tensor]]:
    """Warm-up actions, batches and Gaussian draws in SB3's order, as if recorded."""
    generator = torch.Generator().manual_seed(0)
    warmup = [np.array([0.1 * i - 0.2], dtype=np.float32) for i in range(WARMUP)]
    batches, noise = [], []
    for step in range(WARMUP + 1, STEPS + 1):
        noise.append(torch.randn(1, 1, generator=generator))  # exploration, then the update's
        noise += [torch.randn(BATCH, 1, generator=generator) for _ in range(2)]
        at = step - (WARMUP + 1) + first_update_after
        batches.append((at, at, np.arange(BATCH) % (step - 1)))
    return warmup, batches, noise


def replay(run: _Run, first_update_after: int) -> tuple[ReplayedRngs, object]:
    warmup, batches, noise = recorded_draws(first_update_after)
    rngs = ReplayedRngs(iter(warmup), iter(batches), lambda: run.progress.step)
    run.progress.action_rng = run.progress.sample_rng = rngs
    pending = rlops_order(noise)
    with given_noise(pending):
        run.run(None, show_progress=False)
    return rngs, pending


def test_the_loop_takes_every_recorded_draw_and_stores_the_warmup_actions():
    run, original = tiny_run(), torch.randn_like
    rngs, pending = replay(run, first_update_after=WARMUP + 1)

    stored = run.buffer.table[:WARMUP, run.buffer.obs_dim]
    np.testing.assert_array_equal(stored, np.float32([0.1 * i - 0.2 for i in range(WARMUP)]))
    assert next(rngs.batches, None) is None and next(pending, None) is None
    assert torch.randn_like is original


def test_an_update_at_another_step_than_recorded_stops_the_run_there():
    with pytest.raises(LockstepMismatch, match=r"after env step 6 from 6 rows; .* step 7 from 7"):
        replay(tiny_run(), first_update_after=WARMUP + 2)


def test_rlops_gets_the_next_actions_noise_before_the_batch_actions():
    explore, batch_actions, next_actions = (
        torch.zeros(1, 1),
        torch.ones(3, 1),
        torch.full((3, 1), 2.0),
    )

    first, update = rlops_order([explore, batch_actions, next_actions])

    assert first is explore
    torch.testing.assert_close(update, torch.cat([next_actions, batch_actions]))


def test_noise_of_another_shape_than_asked_is_a_mismatch_and_randn_like_comes_back():
    original = torch.randn_like
    with (
        pytest.raises(LockstepMismatch, match=r"shape \(2, 1\); SB3 drew shape \(1, 1\)"),
        given_noise([torch.zeros(1, 1)]),
    ):
        torch.randn_like(torch.zeros(2, 1))
    assert torch.randn_like is original


def test_under_gsde_rlops_gets_each_noise_matrix_and_not_sb3s_unused_batch_of_them():
    matrices = [torch.full((4, 1), float(i)) for i in range(3)]
    recorded = [draw for m in matrices for draw in (m, torch.zeros(1, 4, 1))]  # as SB3 draws

    replayed = list(rlops_order(recorded, state_dependent=True))

    assert [d.shape for d in replayed] == [(4, 1)] * 3
    assert all(ours is theirs for ours, theirs in zip(replayed, matrices, strict=True))
