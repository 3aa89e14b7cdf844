"""One Stable-Baselines3 SAC training run, measured like rlops' (run by benchmarks/vs_sb3.py).

Runs in the peer's own venv (stable-baselines3, torch, gymnasium only; never rlops):

    <sb3 venv>/bin/python benchmarks/sb3_worker.py '<job json>'

The job gives the env (id, kwargs), the step budget, the seed, the eval seeds, the torch
thread count and SAC's hyperparameters in rlops' names; prints one JSON line: env-steps/s
over the training call, peak RSS after training (before evaluation), the mean
deterministic return with one episode per eval seed, as rlops evaluates, and each training
episode's end step and return.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.monitor import Monitor


def _learning_rate(hp: dict) -> float | object:
    if hp["learning_rate_schedule"] == "linear":
        initial = hp["learning_rate"]
        return lambda progress_remaining: progress_remaining * initial
    return hp["learning_rate"]


def build_model(job: dict, env: gym.Env) -> SAC:
    """SB3's SAC for the job's hyperparameters and seed (also used by lockstep_loop.py)."""
    hp = job["hyperparameters"]
    return SAC(
        "MlpPolicy",
        env,
        learning_rate=_learning_rate(hp),
        buffer_size=hp["buffer_size"],
        learning_starts=hp["learning_starts"],
        batch_size=hp["batch_size"],
        tau=hp["tau"],
        gamma=hp["gamma"],
        train_freq=hp["train_freq"],
        gradient_steps=hp["gradient_steps"],
        ent_coef=hp["ent_coef"],
        target_entropy=hp["target_entropy"],
        use_sde=hp["use_sde"],
        sde_sample_freq=hp["sde_sample_freq"],
        policy_kwargs={"net_arch": list(hp["hidden_sizes"]), "log_std_init": hp["log_std_init"]},
        seed=job["seed"],
        device="cpu",
        verbose=0,
    )


def main() -> None:
    job = json.loads(sys.argv[1])
    torch.set_num_threads(job["torch_threads"])
    env = Monitor(gym.make(job["env_id"], **job["env_kwargs"]))  # SB3 would add it anyway
    model = build_model(job, env)
    with tempfile.TemporaryDirectory() as log_dir:
        # SB3's logger makes a folder even at verbose=0 (in /tmp unless SB3_LOGDIR says).
        os.environ["SB3_LOGDIR"] = log_dir
        start = time.perf_counter()
        model.learn(total_timesteps=job["steps"])
        elapsed = time.perf_counter() - start
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    eval_env = gym.make(job["env_id"], **job["env_kwargs"])
    returns = []
    for seed in job["eval_seeds"]:
        obs, _ = eval_env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    print(
        json.dumps(
            {
                "steps_per_second": job["steps"] / elapsed,
                "mean_return": float(np.mean(returns)),
                "peak_rss_mib": rss_mib,
                "training_episodes": [
                    [int(end), float(episode_return)]
                    for end, episode_return in zip(
                        np.cumsum(env.get_episode_lengths()), env.get_episode_rewards(), strict=True
                    )
                ],
            }
        )
    )


if __name__ == "__main__":
    main()
