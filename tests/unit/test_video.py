"""Episode videos: frames spread over the episode, small, readable back; and one clear error,
naming the env, when it cannot render here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest

from rl_core.evaluation.video import RenderError, record_episode, use_headless_rendering


def _full_torque(obs: np.ndarray) -> np.ndarray:
    """Keeps the pendulum swinging, so that no two sampled frames are alike."""
    return np.array([2.0], dtype=np.float32)


class Counter(gym.Env):
    """Draws a grey level of 20 x the step count; the episode ends after 7 steps."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 40}
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode: str | None = None, broken: bool = False) -> None:
        self.render_mode, self.broken, self.steps = render_mode, broken, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        self.steps = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple:
        self.steps += 1
        return np.zeros(1, np.float32), 0.0, self.steps >= 7, False, {}

    def render(self) -> np.ndarray:
        if self.broken:
            raise OSError("no canvas")
        return np.full((6, 10, 3), 20 * self.steps, np.uint8)


@pytest.fixture
def counter() -> Iterator[None]:
    gym.register("Counter-v0", Counter)  # no time limit: its first frames, every step
    gym.register("CounterLimited-v0", Counter, max_episode_steps=20)
    yield
    for env_id in ("Counter-v0", "CounterLimited-v0"):
        gym.registry.pop(env_id, None)


def test_a_pendulum_episode_becomes_a_small_gif(tmp_path: Path) -> None:
    path = record_episode(
        _full_torque, "Pendulum-v1", 1000, tmp_path / "sub" / "episode.gif", max_frames=20
    )
    assert path == tmp_path / "sub" / "episode.gif"
    frames = iio.imread(path, index=None)
    # 200 steps over 20 frames: the first state and every 10th step, 500 px drawn at 256.
    assert frames.shape == (20, 256, 256, 3)
    assert frames.dtype == np.uint8
    # Every 10th step at Pendulum's 30 fps would be 3 frames/s: sped up to 10 (100 ms).
    assert iio.immeta(path)["duration"] == 100
    assert iio.immeta(path)["loop"] == 0
    assert path.stat().st_size < 200_000


def test_frame_size_and_speed_can_be_chosen(tmp_path: Path) -> None:
    path = record_episode(
        _full_torque, "Pendulum-v1", 1000, tmp_path / "e.gif", max_frames=8, max_side=100, fps=4
    )
    assert iio.imread(path, index=None).shape == (8, 100, 100, 3)
    assert iio.immeta(path)["duration"] == 250


def test_frames_cover_the_episode_and_its_last_state(counter, tmp_path: Path) -> None:
    # A time limit of 20 over 5 frames: every 4th step; the episode ends at step 7.
    path = record_episode(_full_torque, "CounterLimited-v0", 0, tmp_path / "a.gif", max_frames=5)
    frames = iio.imread(path, index=None)
    assert frames.shape == (3, 6, 10, 3)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 80, 140]  # steps 0, 4 and the end, 7
    # No time limit: every step, up to max_frames.
    path = record_episode(_full_torque, "Counter-v0", 0, tmp_path / "b.gif", max_frames=4)
    assert [int(f[0, 0, 0]) for f in iio.imread(path, index=None)] == [0, 20, 40, 60]


def test_an_env_without_rgb_array_rendering_is_named(env_without_rendering, tmp_path) -> None:
    with pytest.raises(
        RenderError,
        match=r"env 'Blind-v0' cannot render rgb_array frames: its render modes are \[\]",
    ):
        record_episode(_full_torque, env_without_rendering, 0, tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()


def test_a_failing_renderer_is_named_with_its_reason(counter, tmp_path: Path) -> None:
    from rl_core.envs.spec import EnvSpec

    spec = EnvSpec("Counter-v0", kwargs={"broken": True})
    with pytest.raises(RenderError, match=r"'Counter-v0' cannot render .* \(OSError: no canvas\)"):
        record_episode(_full_torque, spec, 0, tmp_path / "x.gif")


def test_headless_defaults_never_override_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    assert use_headless_rendering() == {}  # a display: GLFW and SDL's own drivers work
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setenv("SDL_VIDEODRIVER", "offscreen")
    assert use_headless_rendering() == {}
    assert (os.environ["MUJOCO_GL"], os.environ["SDL_VIDEODRIVER"]) == ("egl", "offscreen")


def test_mujoco_renders_without_a_display(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """With MUJOCO_GL unset, the software backend scripts/system-deps.sh installs is chosen."""
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    path = record_episode(
        lambda obs: np.ones(6, np.float32), "HalfCheetah-v5", 0, tmp_path / "h.gif", max_frames=3
    )
    frames = iio.imread(path, index=None)
    assert frames.shape[1:] == (256, 256, 3)
    assert 1 <= len(frames) <= 3  # identical frames are merged: the cheetah may lie still
    assert frames[0].std() > 0  # a picture, not a blank
    assert os.environ["MUJOCO_GL"] in ("osmesa", "egl")


def test_mujoco_without_an_opengl_backend_says_what_to_set(tmp_path: Path) -> None:
    """GLFW needs a display: the error says which backends work without one."""
    code = textwrap.dedent(
        f"""
        import numpy as np
        from rl_core.evaluation.video import RenderError, record_episode
        try:
            record_episode(lambda o: np.zeros(6, np.float32), "HalfCheetah-v5", 0,
                           {str(tmp_path / "h.gif")!r}, max_frames=2)
        except RenderError as exc:
            print(exc)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "MUJOCO_GL": "glfw"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "env 'HalfCheetah-v5' cannot render rgb_array frames here" in done.stdout
    assert "set MUJOCO_GL=osmesa" in done.stdout
    assert "or MUJOCO_GL=egl" in done.stdout
    assert "MUJOCO_GL is 'glfw'" in done.stdout
