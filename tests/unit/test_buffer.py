import numpy as np
import pytest

from rl_core.sac.buffer import ReplayBuffer


def _fill(buffer: ReplayBuffer, n: int) -> None:
    for i in range(n):
        buffer.add(np.full(3, i), np.full(1, -i), float(i), np.full(3, i + 1), i % 2 == 0)


def test_sample_shapes_and_row_consistency() -> None:
    buffer = ReplayBuffer(100, obs_dim=3, act_dim=1)
    _fill(buffer, 50)
    batch = buffer.sample(32, np.random.default_rng(0))
    assert batch.obs.shape == (32, 3)
    assert batch.actions.shape == (32, 1)
    assert batch.rewards.shape == (32,)
    assert batch.next_obs.shape == (32, 3)
    assert batch.terminated.shape == (32,)
    # each sampled row is one coherent transition
    i = batch.rewards
    assert (batch.obs[:, 0] == i).all()
    assert (batch.actions[:, 0] == -i).all()
    assert (batch.next_obs[:, 0] == i + 1).all()
    assert (batch.terminated == (i % 2 == 0).float()).all()


def test_ring_overwrites_oldest() -> None:
    buffer = ReplayBuffer(10, obs_dim=3, act_dim=1)
    _fill(buffer, 25)
    assert buffer.size == 10
    assert sorted(buffer.table[:, 4].tolist()) == list(range(15, 25))


def test_sampling_is_driven_by_the_rng() -> None:
    buffer = ReplayBuffer(100, obs_dim=3, act_dim=1)
    _fill(buffer, 100)
    a = buffer.sample(16, np.random.default_rng(1)).rewards
    b = buffer.sample(16, np.random.default_rng(1)).rewards
    c = buffer.sample(16, np.random.default_rng(2)).rewards
    assert (a == b).all()
    assert not (a == c).all()


def test_state_round_trip() -> None:
    buffer = ReplayBuffer(10, obs_dim=3, act_dim=1)
    _fill(buffer, 13)
    restored = ReplayBuffer(10, obs_dim=3, act_dim=1)
    restored.load_state_dict(buffer.state_dict())
    assert (restored.size, restored.position) == (buffer.size, buffer.position)
    np.testing.assert_array_equal(restored.table[: restored.size], buffer.table[: buffer.size])


def test_state_holds_the_filled_rows_without_copying_them() -> None:
    # A checkpoint of a full 1M buffer must not double its 168 MB (rl_core/sac/buffer.py).
    buffer = ReplayBuffer(10, obs_dim=3, act_dim=1)
    _fill(buffer, 7)
    table = buffer.state_dict()["table"]
    assert isinstance(table, np.ndarray)
    assert len(table) == 7
    assert np.shares_memory(table, buffer.table)


def test_state_of_another_shape_is_refused() -> None:
    other = ReplayBuffer(10, obs_dim=4, act_dim=1)
    _fill_other = np.zeros((3, other.table.shape[1]), dtype=np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        ReplayBuffer(10, obs_dim=3, act_dim=1).load_state_dict(
            {"table": _fill_other, "position": 3}
        )


def test_empty_buffer_cannot_be_sampled() -> None:
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(10, 3, 1).sample(4, np.random.default_rng(0))
