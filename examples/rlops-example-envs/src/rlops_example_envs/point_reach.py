"""PointReach: steer a point mass to a target on a plane, as fast and as gently as you can.

Observation (6): position (x, y), velocity (vx, vy), and the target's offset from the point.
Action (2): a force in [-1, 1] on each axis. Reward per step: minus the distance to the
target, minus a small cost on the force. An episode lasts `max_steps` steps (truncated);
a random policy scores about -160 over 100 steps, a hand-written PD controller
about -6.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class PointReachEnv(gym.Env[np.ndarray, np.ndarray]):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        max_steps: int = 100,
        force_cost: float = 0.01,
        render_mode: str | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        if force_cost < 0:
            raise ValueError(f"force_cost must be non-negative, got {force_cost}")
        self.max_steps = max_steps
        self.force_cost = force_cost
        self.render_mode = render_mode
        self.dt, self.damping = 0.1, 0.9
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(6,), dtype=np.float32)
        self._position = np.zeros(2)
        self._velocity = np.zeros(2)
        self._target = np.zeros(2)
        self._steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1.0, 1.0, size=2)
        self._velocity = np.zeros(2)
        self._target = self.np_random.uniform(-1.0, 1.0, size=2)
        self._steps = 0
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        force = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._velocity = self.damping * self._velocity + self.dt * force * 5.0
        self._position = np.clip(self._position + self.dt * self._velocity, -1.5, 1.5)
        self._steps += 1
        distance = float(np.linalg.norm(self._target - self._position))
        reward = -distance - self.force_cost * float(np.sum(force**2))
        return self._observation(), reward, False, self._steps >= self.max_steps, {}

    def render(self) -> np.ndarray | None:
        """A 64x64 RGB frame: the target in green, the point in red."""
        if self.render_mode != "rgb_array":
            return None
        frame = np.full((64, 64, 3), 255, dtype=np.uint8)
        for place, colour in ((self._target, (0, 160, 0)), (self._position, (200, 0, 0))):
            col, row = ((np.clip(place, -1.5, 1.5) + 1.5) / 3.0 * 63).astype(int)
            frame[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = colour
        return frame

    def _observation(self) -> np.ndarray:
        offset = self._target - self._position
        return np.concatenate([self._position, self._velocity, offset]).astype(np.float32)
