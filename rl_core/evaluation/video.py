"""One episode of a policy as an animated GIF: a picture of what the returns mean.

A mean return of -150 says little to someone who has not watched Pendulum; a few seconds of
the policy swinging the pole up says it at once. `record_episode` plays one deterministic
episode on a given env seed (the same episode the gate scored on that seed) and draws it with
gymnasium's off-screen `rgb_array` rendering, keeping the file small: at most `max_frames`
frames spread evenly over the episode, downscaled to `max_side` pixels.

Rendering needs no display. Classic-control and Box2D envs draw with pygame; MuJoCo envs need
an OpenGL backend that works without one, `MUJOCO_GL=osmesa` (software, Debian's
`libosmesa6`) or `MUJOCO_GL=egl` (a GPU, or Mesa's software EGL). When nothing is chosen and
there is no display, `use_headless_rendering` chooses them. An env that cannot draw frames
here is one `RenderError` naming it and why.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import functools
import math
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # gymnasium, numpy and the image libraries load when a video is made
    import gymnasium as gym
    import numpy as np

    from rl_core.envs.spec import EnvSpec
    from rl_core.evaluation.episodes import Policy

VIDEO_ARTIFACT_DIR = "video"
VIDEO_FILE = "episode.gif"
VIDEO_ARTIFACT = f"{VIDEO_ARTIFACT_DIR}/{VIDEO_FILE}"
"""Where a run's episode GIF lies among its artifacts."""
DEFAULT_MAX_FRAMES = 100
DEFAULT_MAX_SIDE = 256
MIN_FPS = 10.0
"""A long episode spread over few frames plays faster than real time rather than stutter."""
MUJOCO_GL_ENV = "MUJOCO_GL"
MUJOCO_HINT = (
    "MuJoCo draws with OpenGL, which needs a backend that works without a display: set "
    "MUJOCO_GL=osmesa (software; Debian package libosmesa6) or MUJOCO_GL=egl (a GPU, or "
    "Mesa's libegl-mesa0)"
)


class RenderError(RuntimeError):
    """The env cannot draw `rgb_array` frames here; the message names the env and why."""


def _gl_backend_available() -> str | None:
    """An off-screen OpenGL backend MuJoCo can use on this machine, if its library is here.

    OSMesa first: it renders in software with no device at all, so where its library is
    installed it works; EGL needs a GPU or Mesa's software EGL driver.
    """
    chosen = os.environ.get("PYOPENGL_PLATFORM", "").lower()  # MuJoCo must agree with it
    if chosen in ("osmesa", "egl"):
        return chosen
    return _installed_gl_library()


@functools.cache
def _installed_gl_library() -> str | None:
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    if ctypes.util.find_library("EGL"):
        return "egl"
    return None


def use_headless_rendering() -> dict[str, str]:
    """On a Linux machine with no display, choose off-screen rendering backends that were not
    chosen already; returns what it set.

    `MUJOCO_GL`: without it MuJoCo tries GLFW, which needs a display. `SDL_VIDEODRIVER=dummy`:
    pygame (classic control, Box2D) draws off screen either way, but without it SDL prints an
    error line while it looks for a display, which a task log files as an error. MuJoCo reads
    `MUJOCO_GL` when it first renders, so this works until then.
    """
    if not sys.platform.startswith("linux"):
        return {}
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return {}
    chosen = {}
    if "SDL_VIDEODRIVER" not in os.environ:
        chosen["SDL_VIDEODRIVER"] = "dummy"
    backend = _gl_backend_available()
    if MUJOCO_GL_ENV not in os.environ and backend is not None:
        chosen[MUJOCO_GL_ENV] = backend
    os.environ.update(chosen)
    return chosen


def record_episode(
    policy: Policy,
    env: EnvSpec | str,
    seed: int,
    path: Path,
    *,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int = DEFAULT_MAX_SIDE,
    fps: float | None = None,
) -> Path:
    """Play one episode of `policy` on env seed `seed` and write it to `path` as a looping GIF.

    The frames are the first state and every k-th step after it, k chosen from the env's time
    limit so that at most `max_frames` cover the whole episode (an env without one: its first
    `max_frames` steps), plus the last state when the episode ends between two. Each frame is
    scaled down to at most `max_side` pixels a side. `fps` defaults to real time (the env's
    `render_fps` / k), sped up to `MIN_FPS` at least. The GIF writer merges identical
    consecutive frames (adding their delays), so a still scene may read back as fewer frames.
    `RenderError` if the env cannot draw frames here.
    """
    import imageio.v3 as iio
    import numpy as np

    from rl_core.envs.spec import EnvSpec

    if max_frames < 1 or max_side < 1 or (fps is not None and fps <= 0):
        raise ValueError(
            f"max_frames ({max_frames}) and max_side ({max_side}) must be >= 1, fps ({fps}) > 0"
        )
    spec = EnvSpec.of(env)
    use_headless_rendering()
    made = _rendering_env(spec)
    try:
        limit = made.spec.max_episode_steps if made.spec else None
        every = max(1, math.ceil(limit / max_frames)) if limit else 1
        frames = _play(policy, made, spec, seed, every, max_frames, max_side)
        render_fps = float(made.metadata.get("render_fps") or 30)
    except BaseException:
        with contextlib.suppress(Exception):  # a half-made GL context may not close either
            made.close()
        raise
    made.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame_ms = 1000.0 / (fps if fps is not None else max(MIN_FPS, render_fps / every))
    # GIF delays are in 1/100 s, and browsers slow anything under 20 ms down to 100 ms.
    duration = max(20, round(frame_ms / 10) * 10)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=duration, loop=0)
    return path


def _rendering_env(spec: EnvSpec) -> gym.Env:
    """The env in `rgb_array` mode, or a `RenderError` if it offers no such mode."""
    from rl_core.envs.spec import EnvError, make_env

    try:
        with warnings.catch_warnings():
            # gymnasium warns, then builds it anyway, when a mode is not offered: said below
            warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
            made = make_env(spec, render_mode="rgb_array")
    except EnvError as exc:
        raise RenderError(f"env {spec.id!r} cannot render rgb_array frames: {exc}") from None
    modes = list(made.metadata.get("render_modes") or [])
    if "rgb_array" not in modes:
        made.close()
        raise RenderError(
            f"env {spec.id!r} cannot render rgb_array frames: its render modes are {modes}"
        )
    return made


def _play(
    policy: Policy,
    env: gym.Env,
    spec: EnvSpec,
    seed: int,
    every: int,
    max_frames: int,
    max_side: int,
) -> list[np.ndarray]:
    obs, _ = env.reset(seed=int(seed))
    frames = [_frame(env, spec, max_side)]
    step = 0
    while len(frames) < max_frames:
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        step += 1
        if step % every == 0 or terminated or truncated:
            frames.append(_frame(env, spec, max_side))
        if terminated or truncated:
            break
    return frames


def _frame(env: gym.Env, spec: EnvSpec, max_side: int) -> np.ndarray:
    """The env's current frame as RGB uint8, at most `max_side` pixels a side."""
    import numpy as np
    from PIL import Image

    try:
        frame = env.render()
    except Exception as exc:  # whatever the backend raises, the news is: no frames here
        raise RenderError(_render_failure(env, spec, exc)) from exc
    if not (
        isinstance(frame, np.ndarray)
        and frame.dtype == np.uint8
        and frame.ndim == 3
        and frame.shape[2] in (3, 4)
    ):
        shown = (
            f"a {frame.dtype} array of shape {frame.shape}"
            if isinstance(frame, np.ndarray)
            else repr(frame)
        )
        raise RenderError(
            f"env {spec.id!r}: render() returned {shown}, not a uint8 RGB image (height, width, 3)"
        )
    image = Image.fromarray(np.ascontiguousarray(frame[..., :3]))
    scale = max_side / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image)


def _render_failure(env: gym.Env, spec: EnvSpec, exc: Exception) -> str:
    try:
        reason = f"{type(exc).__name__}: {exc}"
    except Exception:  # PyOpenGL's EGL errors can fail to format themselves
        reason = type(exc).__name__
    message = f"env {spec.id!r} cannot render rgb_array frames here ({reason})"
    if hasattr(env.unwrapped, "mujoco_renderer"):
        backend = os.environ.get(MUJOCO_GL_ENV)
        now = f"MUJOCO_GL is {backend!r}" if backend else "MUJOCO_GL is not set"
        message += f"; {MUJOCO_HINT}; {now}"
    return message
