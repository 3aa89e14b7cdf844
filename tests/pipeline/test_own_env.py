"""A user's own env, trained through the pipeline (`airflow dags test`) to a registered version.

`PointReach-v0` comes from the installable example package in examples/ (installed into the
venv by scripts/bootstrap.sh), offered through the `rlops.envs` entry points; `env_kwargs`
reaches its constructor and travels with the exported policy, so MLflow's pyfunc model, the
champion re-evaluation and the drift monitor build the same env.
"""

from __future__ import annotations

import os

import mlflow.pyfunc
import numpy as np
import pytest
from mlflow import MlflowClient

from rl_core.envs.spec import EnvSpec
from rl_core.evaluation.episodes import evaluate
from rl_core.policy.export import exported_policy
from rl_core.policy.policy_model import load_policy_folder
from tests.conftest import airflow_dags_test
from tests.pipeline.conftest import QUICK_RUN

DAG_ID = "rlops_sac_pipeline"
MODEL = "rlops-point-reach"
CONF = {
    **QUICK_RUN,
    "env_id": "PointReach-v0",
    "env_kwargs": {"max_steps": 50},
    "registered_model_name": MODEL,
}


@pytest.mark.slow
def test_an_env_of_your_own_is_trained_to_a_registered_version(
    airflow_db, pipeline_store, tmp_path
) -> None:
    env = {**os.environ, **airflow_db}
    done = airflow_dags_test(DAG_ID, env, CONF)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    client = MlflowClient()
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    assert run.data.params["env_id"] == "PointReach-v0"
    assert version.tags["env_id"] == "PointReach-v0"
    assert version.tags["rlops.promotion"] == "promoted"
    # evaluate drew the candidate's episode (the env's own 64x64 frames) onto its run
    assert run.data.tags["rlops.video"] == "video/episode.gif"
    videos = client.list_artifacts(version.run_id, "video")
    assert [a.path for a in videos] == ["video/episode.gif"]

    folder = mlflow.artifacts.download_artifacts(f"models:/{MODEL}@champion", dst_path=tmp_path)
    exported, meta = load_policy_folder(folder)
    assert meta.env == EnvSpec("PointReach-v0", (), {"max_steps": 50})
    assert (meta.obs_dim, meta.act_dim) == (6, 2)
    # The recorded figure is what the exported policy scores on the env it names.
    again = evaluate(exported_policy(exported), meta.env, [1000, 1001, 1002])
    assert again.mean == pytest.approx(run.data.metrics["eval_mean_return"], abs=1e-3)
    actions = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(
        np.zeros((4, 6), dtype=np.float32)
    )
    assert actions.shape == (4, 2)
    assert np.all(np.abs(actions) <= 1.0)
