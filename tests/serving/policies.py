"""Registered model versions for the serving and monitoring tests.

Real TorchScript actors in a real MLflow registry, laid out as the pipeline registers them (a
run's `model/` folder: the actor file and `export.json`; version tags `reward`, `env_id`), but
untrained: a server does not care about the weights, and an untrained policy's return is known.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from mlflow import MlflowClient

from rl_core.envs import make_env, space_dims
from rl_core.export import export_actor
from rl_core.networks import Actor
from rlops_airflow.registry import ModelRegistry

ENV_ID = "Pendulum-v1"
HIDDEN = (32, 32)


def register_policy(model_name: str, *, reward: float, seed: int = 0, env_id: str = ENV_ID) -> str:
    """A new version of `model_name` (untrained actor from `seed`); returns its number."""
    env = make_env(env_id)
    obs_dim, act_dim = space_dims(env)
    low, high = (
        torch.as_tensor(b, dtype=torch.float32)
        for b in (env.action_space.low, env.action_space.high)
    )
    env.close()
    torch.manual_seed(seed)
    actor = Actor(obs_dim, act_dim, HIDDEN, low, high)
    client = MlflowClient()
    run_id = client.create_run(_experiment(client)).info.run_id
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "model"
        export_actor(actor, model_dir / "actor.pt", env_id)
        meta = {"file": "actor.pt", "env_id": env_id, "obs_dim": obs_dim, "act_dim": act_dim}
        (model_dir / "export.json").write_text(json.dumps(meta))
        client.log_artifacts(run_id, str(model_dir), "model")
    client.set_terminated(run_id)
    tags = {"reward": f"{reward:.4f}", "env_id": env_id, "eval_seeds": "[1000, 1001]"}
    version = ModelRegistry(model_name).register(run_id, "model", f"tests/{run_id}", tags)
    return str(version.version)


def _experiment(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name("serving-tests")
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment("serving-tests")
