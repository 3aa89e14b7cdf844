"""Registered model versions for the serving and monitoring tests.

Real policy models in a real MLflow registry, made as the pipeline makes them (a LoggedModel
written by `rl_core.policy.policy_model`, which records its files' digests; registered through
`ModelRegistry.register`, which copies them onto the version; version tags `reward`,
`env_id`), but untrained: a server does not care about the weights, and an untrained policy's
return is known.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch
from mlflow import MlflowClient

from rl_core.envs.spec import make_env, space_dims
from rl_core.policy.policy_model import log_policy_model
from rl_core.sac.networks import Actor
from rlops_registry import tags
from rlops_registry.registry import ModelRegistry

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
    logged = log_policy_model(actor, env_id, run_id)
    client.set_terminated(run_id)
    version_tags = {tags.REWARD: f"{reward:.4f}", tags.ENV_ID: env_id, tags.EVAL_SEEDS: "[1000]"}
    registry = ModelRegistry(model_name)
    version = registry.register(
        logged.model_uri, logged.model_id, run_id, f"tests/{run_id}", version_tags
    )
    return str(version.version)


def register_broken_version(model_name: str, scratch: Path) -> str:
    """A new version of `model_name` whose folder holds no model (a README): it cannot load."""
    client = MlflowClient()
    run_id = client.create_run(_experiment(client)).info.run_id
    (scratch / "README").write_text("no MLmodel, no actor")
    client.log_artifact(run_id, str(scratch / "README"), "model")
    version = ModelRegistry(model_name).register(
        f"runs:/{run_id}/model", None, run_id, f"tests/broken/{run_id}", {tags.REWARD: "-1"}
    )
    return str(version.version)


def logged_model_id(model_name: str, version: str) -> str:
    """The LoggedModel a version was registered from (its source is `models:/<id>`)."""
    return MlflowClient().get_model_version(model_name, version).source.removeprefix("models:/")


def overwrite_actor(model_id: str, actor_file: Path) -> None:
    """Replace LoggedModel `model_id`'s `artifacts/actor.pt` in the artifact store, through
    MLflow's client: what anyone who can write there could do after registration."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "artifacts").mkdir()
        shutil.copyfile(actor_file, Path(scratch) / "artifacts" / "actor.pt")
        MlflowClient().log_model_artifacts(model_id, scratch)


def _experiment(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name("serving-tests")
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment("serving-tests")
