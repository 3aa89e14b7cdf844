"""Stable-Baselines3's env-steps/s in its update phase alone (run by rl_zoo_budget.py).

Runs in the peer's own venv, like sb3_worker.py (whose `build_model` it uses):

    <sb3 venv>/bin/python benchmarks/sb3_window.py '<job json>'

A full-budget SB3 run takes hours here, so rl_zoo_budget.py projects its time from a short
run instead: the job's `steps` are `learning_starts` plus a window of updating steps. A 30k
run's average would not do: its uniform warm-up takes no update and runs several times
faster, a third of a 30k run but 1% of a 1M one. So the clock is read when the warm-up ends:
prints one JSON line with the warm-up's seconds, the updating steps and their seconds.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import gymnasium as gym
import torch
from sb3_worker import build_model
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor


class WarmupClock(BaseCallback):
    """Notes when training starts and when the env step `warmup_end` has been collected
    (SB3 updates only after `learning_starts` steps, from the next step on)."""

    def __init__(self, warmup_end: int) -> None:
        super().__init__()
        self.warmup_end = warmup_end
        self.started = self.warmup_done = 0.0

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps == self.warmup_end:
            self.warmup_done = time.perf_counter()
        return True


def main() -> None:
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["torch_threads"])
    env = Monitor(gym.make(job["env_id"], **job["env_kwargs"]))  # as sb3_worker.py
    model = build_model(job, env)
    warmup_end = max(job["hyperparameters"]["learning_starts"], 1)
    clock = WarmupClock(warmup_end)
    with tempfile.TemporaryDirectory() as log_dir:
        os.environ["SB3_LOGDIR"] = log_dir  # SB3's logger makes a folder even at verbose=0
        model.learn(total_timesteps=job["steps"], callback=clock)
        ended = time.perf_counter()
    print(
        json.dumps(
            {
                "warmup_steps": warmup_end,
                "warmup_seconds": clock.warmup_done - clock.started,
                "updating_steps": job["steps"] - warmup_end,
                "updating_seconds": ended - clock.warmup_done,
            }
        )
    )


if __name__ == "__main__":
    main()
