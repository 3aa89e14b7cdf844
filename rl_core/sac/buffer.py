"""Preallocated replay buffer: one float32 table, one row per transition.

A row is [obs, action, reward, next_obs, terminated]; adding writes one row in place and a batch
is one fancy-index of the table, shared zero-copy with torch. Memory is reserved up front but
pages are only touched as the buffer fills.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class Batch(NamedTuple):
    """A sampled minibatch; `terminated` is 1.0 where the episode truly ended (no bootstrap)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions with uniform sampling."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self._reward_col = obs_dim + act_dim
        self._next_obs_cols = slice(self._reward_col + 1, self._reward_col + 1 + obs_dim)
        self.table = np.empty((capacity, 2 * obs_dim + act_dim + 2), dtype=np.float32)
        self.position = 0
        self.size = 0

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
    ) -> None:
        """Store one transition, overwriting the oldest once full."""
        row = self.table[self.position]
        row[: self.obs_dim] = obs
        row[self.obs_dim : self._reward_col] = action
        row[self._reward_col] = reward
        row[self._next_obs_cols] = next_obs
        row[-1] = terminated
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Uniformly sample `batch_size` transitions (with replacement) using `rng`."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        # np.take copies whole rows; fancy indexing took 34 -> 56 us for the gather as the table
        # grew from 30k to 1M rows, np.take 23 -> 35 (AMD EPYC, loaded; benchmarks/full_buffer.py).
        # Either is ~1% of an update: a full buffer is not what slows a long run.
        rows = torch.from_numpy(
            np.take(self.table, rng.integers(0, self.size, size=batch_size), axis=0)
        )
        obs, actions, rewards, next_obs, terminated = rows.split(
            [self.obs_dim, self.act_dim, 1, self.obs_dim, 1], dim=1
        )
        return Batch(obs, actions, rewards.squeeze(1), next_obs, terminated.squeeze(1))

    def state_dict(self) -> dict[str, object]:
        """The filled part of the table plus the write position (for exact resume).

        The rows are a view, not a copy: a checkpoint writes them before the next `add`, and
        a copy of a full buffer would cost 168 MB of memory that the training loop's malloc
        settings never give back, plus the time to copy it. Copy it to keep it past an `add`.
        """
        return {"table": self.table[: self.size], "position": self.position}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore rows and write position saved by `state_dict`."""
        table = np.asarray(state["table"], dtype=np.float32)
        if table.shape[1] != self.table.shape[1] or len(table) > self.capacity:
            raise ValueError(
                f"replay buffer state of shape {table.shape} does not fit a buffer of "
                f"capacity {self.capacity} and row width {self.table.shape[1]}"
            )
        self.table[: len(table)] = table
        self.size = len(table)
        self.position = int(state["position"])  # type: ignore[arg-type]
