"""The servable policy folder: an MLflow pyfunc model around the TorchScript actor.

This module alone writes and reads that folder. The CLI's `export`, the pipeline's export
task, the policy server and the drift monitor all go through it, so its layout is stated
only here:

    MLmodel             python_function flavor whose code is pyfunc_policy.py; a tensor
                        signature (-1, obs_dim) float32 -> (-1, act_dim) float32; an input
                        example (two real observations); metadata["rlops"] (`PolicyMeta`)
    artifacts/actor.pt  the TorchScript actor, checked against the eager one; the policy
                        server loads it directly (its fast path)
    pyfunc_policy.py    the pyfunc wrapper MLflow runs (imports torch, numpy, mlflow only)
    requirements.txt    pinned torch, numpy and mlflow (no dependency inference)

So `mlflow.pyfunc.load_model(...)` and `mlflow models serve -m ...` work on any registered
version, and act exactly like the trained actor. mlflow is imported inside the functions:
rl_core stays usable without it.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from rl_core.envs import EnvSpec
from rl_core.export import export_actor, load_exported, real_observations
from rl_core.networks import Actor

ACTOR_ARTIFACT = "actor"
"""Key of the TorchScript file among the pyfunc model's artifacts."""
METADATA_KEY = "rlops"
"""Key of `PolicyMeta` in the MLmodel file's metadata."""
POLICY_FORMAT = 2
PYFUNC_CODE = Path(__file__).with_name("pyfunc_policy.py")
LOGGED_MODEL_NAME = "policy"


class PolicyFolderError(ValueError):
    """A folder that is not an rlops policy model; the message names what is missing."""


@dataclass(frozen=True)
class PolicyMeta:
    """What a policy folder says about its actor (MLmodel metadata["rlops"])."""

    env_id: str
    obs_dim: int
    act_dim: int
    max_abs_diff_vs_eager: float
    observations_checked: int
    torch_version: str
    format: int = POLICY_FORMAT
    env_packages: tuple[str, ...] = ()
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Folders of format 1 name the env id alone: these default to nothing."""

    @property
    def env(self) -> EnvSpec:
        """How to build the env the policy acts in (evaluation, drift monitor)."""
        return EnvSpec(self.env_id, tuple(self.env_packages), dict(self.env_kwargs))


@dataclass(frozen=True)
class LoggedPolicy:
    """A policy logged as an MLflow LoggedModel: register `model_uri` (with `model_id`)."""

    model_id: str
    model_uri: str


MLFLOW_IMPORT_NOISE = r".*Any type hint is inferred as AnyType"
"""A UserWarning mlflow.pyfunc 3.17 raises about its own GenAI types whenever it is imported."""


def _pyfunc() -> ModuleType:
    """`mlflow.pyfunc`, imported without the warning it prints about itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", MLFLOW_IMPORT_NOISE, UserWarning)
        import mlflow.pyfunc

    return mlflow.pyfunc


def _requirements() -> list[str]:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("numpy", "mlflow")]
    return [f"torch=={torch.__version__.split('+')[0]}", *pins]


def save_policy_model(actor: Actor, env: EnvSpec | str, path: str | Path) -> PolicyMeta:
    """Export `actor` into a new MLflow pyfunc folder at `path`; returns what it recorded.

    The TorchScript file is checked against the eager actor first (`export_actor` raises
    on a mismatch), so no folder exists for an export that differs from the trained policy.
    """
    pyfunc = _pyfunc()
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    env = EnvSpec.of(env)
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_actor(actor, Path(scratch) / "actor.pt", env)
        meta = PolicyMeta(
            env_id=env.id,
            env_packages=env.packages,
            env_kwargs=dict(env.kwargs),
            obs_dim=actor.obs_dim,
            act_dim=actor.act_dim,
            max_abs_diff_vs_eager=exported.max_abs_diff,
            observations_checked=exported.n_checked,
            torch_version=str(torch.__version__),
        )
        float32 = np.dtype(np.float32)
        signature = ModelSignature(
            inputs=Schema([TensorSpec(float32, (-1, meta.obs_dim))]),
            outputs=Schema([TensorSpec(float32, (-1, meta.act_dim))]),
        )
        # A batch of two: an example of one would suggest the batch size is fixed.
        example = real_observations(actor, env, seed=0)[:2].numpy()
        pyfunc.save_model(
            str(path),
            python_model=str(PYFUNC_CODE),
            artifacts={ACTOR_ARTIFACT: str(exported.path)},
            model_config={"actor_artifact": ACTOR_ARTIFACT},
            signature=signature,
            input_example=example,
            metadata={METADATA_KEY: asdict(meta)},
            pip_requirements=_requirements(),
        )
    return meta


def read_policy_meta(path: str | Path) -> tuple[PolicyMeta, Path]:
    """The folder's `PolicyMeta` and the path of its TorchScript actor."""
    from mlflow.models import Model

    path = Path(path)
    if not (path / "MLmodel").is_file():
        raise PolicyFolderError(f"{path} is not an MLflow model folder (no MLmodel file)")
    model = Model.load(str(path / "MLmodel"))
    raw: dict[str, Any] | None = (model.metadata or {}).get(METADATA_KEY)
    pyfunc = model.flavors.get("python_function", {})
    actor = pyfunc.get("artifacts", {}).get(ACTOR_ARTIFACT, {}).get("path")
    if raw is None or actor is None:
        raise PolicyFolderError(
            f"{path} is an MLflow model but not an rlops policy (no metadata[{METADATA_KEY!r}] "
            f"or no {ACTOR_ARTIFACT!r} artifact); export one with `rlops export`"
        )
    return PolicyMeta(**raw), path / actor


def load_policy_folder(path: str | Path) -> tuple[torch.jit.ScriptModule, PolicyMeta]:
    """The folder's TorchScript actor, loaded, and its `PolicyMeta`."""
    meta, actor_file = read_policy_meta(path)
    return load_exported(actor_file), meta


def log_policy_model(
    actor: Actor, env: EnvSpec | str, run_id: str, tags: dict[str, str] | None = None
) -> LoggedPolicy:
    """Save the policy folder and log it as a LoggedModel of MLflow run `run_id`.

    The model is created, uploaded and only then marked READY, so a crash in between leaves
    a model that is never READY (callers looking for a finished one skip it).
    """
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    client = MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "policy"
        save_policy_model(actor, env, folder)
        model = client.create_logged_model(
            experiment_id, name=LOGGED_MODEL_NAME, source_run_id=run_id, tags=tags
        )
        client.log_model_artifacts(model.model_id, str(folder))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return LoggedPolicy(model.model_id, f"models:/{model.model_id}")
