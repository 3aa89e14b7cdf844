"""A candidate as the stages after training read it: which actor file of its run is the
candidate, that actor loaded, and the words its gate verdicts are written in.

Shared by `evaluate`, `export` and `register`, so they take the same file and state a verdict
alike (the canary reads the registered `passed` back).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rl_core.common.artifact_names import ACTOR_ARTIFACT_DIR, ACTOR_FILE, BEST_ACTOR_FILE
from rl_core.envs.spec import EnvSpec
from rl_core.policy.checkpoint import load_actor
from rl_core.sac.networks import Actor
from rlops_airflow.mlflow_run import download, has_artifact
from rlops_airflow.settings import PipelineSettings


def trained_actor(run_id: str, artifact: str) -> tuple[Actor, EnvSpec]:
    """An actor file of the run and its env spec: the small file, not the training state."""
    with tempfile.TemporaryDirectory() as scratch:
        return load_actor(download(run_id, artifact, Path(scratch)))


def candidate_actor(settings: PipelineSettings, run_id: str) -> str:
    """Which actor of the run is the candidate: the best of the evaluations during training
    (when `use_best` and the run made them), else the last one."""
    if settings.use_best and has_artifact(run_id, ACTOR_ARTIFACT_DIR, BEST_ACTOR_FILE):
        return f"{ACTOR_ARTIFACT_DIR}/{BEST_ACTOR_FILE}"
    return f"{ACTOR_ARTIFACT_DIR}/{ACTOR_FILE}"


def verdict(passed: bool) -> str:
    """A gate's verdict as tags and logs state it."""
    return "passed" if passed else "failed"
