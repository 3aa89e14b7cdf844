"""Figures logged next to a run: the reward curve a user looks at first."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def reward_curve_png(
    episode_end_steps: Sequence[int],
    episode_returns: Sequence[float],
    path: str | Path,
    title: str = "Episode return",
) -> Path:
    """Plot episode returns (and a 10-episode moving average) against env steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    returns = np.asarray(episode_returns, dtype=float)
    ax.plot(episode_end_steps, returns, alpha=0.35, label="episode")
    if len(returns) >= 10:
        smooth = np.convolve(returns, np.ones(10) / 10, mode="valid")
        ax.plot(episode_end_steps[9:], smooth, label="10-episode mean")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
