"""The servable policy folder: MLflow loads it on its own and it acts like the trained actor."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pytest
import torch

from rl_core.export import random_observations
from rl_core.networks import Actor
from rl_core.policy_model import (
    PolicyFolderError,
    load_policy_folder,
    read_policy_meta,
    save_policy_model,
)

ENV_ID = "Pendulum-v1"


@pytest.fixture
def actor() -> Actor:
    torch.manual_seed(3)
    return Actor(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]))


def test_mlflow_pyfunc_loads_it_and_it_acts_like_the_actor(actor, tmp_path: Path) -> None:
    meta = save_policy_model(actor, ENV_ID, tmp_path / "policy")
    assert (meta.env_id, meta.obs_dim, meta.act_dim) == (ENV_ID, 3, 1)
    assert meta.max_abs_diff_vs_eager <= 1e-5

    model = mlflow.pyfunc.load_model(str(tmp_path / "policy"))
    observations = random_observations(ENV_ID, 7, seed=5)
    with torch.inference_mode():
        expected = actor.deterministic_action(observations).numpy()
    for batch in (observations[:1], observations):
        actions = model.predict(batch.numpy())
        assert actions.shape == (len(batch), 1)
        assert abs(actions - expected[: len(batch)]).max() <= 1e-5
    signature = model.metadata.signature
    assert signature.inputs.inputs[0].shape == (-1, 3)
    assert signature.outputs.inputs[0].shape == (-1, 1)
    assert (tmp_path / "policy" / "input_example.json").exists()


def test_the_fast_path_reads_the_same_folder(actor, tmp_path: Path) -> None:
    save_policy_model(actor, ENV_ID, tmp_path / "policy")
    module, meta = load_policy_folder(tmp_path / "policy")
    observations = random_observations(ENV_ID, 16, seed=6)
    with torch.inference_mode():
        torch.testing.assert_close(module(observations), actor.deterministic_action(observations))
    assert read_policy_meta(tmp_path / "policy")[0] == meta


def test_a_folder_that_is_not_a_policy_is_named(actor, tmp_path: Path) -> None:
    with pytest.raises(PolicyFolderError, match=f"{tmp_path} is not an MLflow model folder"):
        read_policy_meta(tmp_path)
    save_policy_model(actor, ENV_ID, tmp_path / "policy")
    mlmodel = tmp_path / "policy" / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("rlops:", "someone_else:"))
    with pytest.raises(PolicyFolderError, match="not an rlops policy"):
        read_policy_meta(tmp_path / "policy")
