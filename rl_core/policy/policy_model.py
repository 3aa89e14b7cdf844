"""The servable policy folder: an MLflow pyfunc model around the TorchScript and ONNX actor.

This module alone writes and reads that folder. The CLI's `export`, the pipeline's export
task, the policy server and the drift monitor all go through it, so its layout is stated
only here:

    MLmodel             python_function flavor whose code is pyfunc_policy.py; a tensor
                        signature (-1, obs_dim) float32 -> (-1, act_dim) float32; an input
                        example (two real observations); metadata["rlops"] (`PolicyMeta`)
    artifacts/actor.pt  the TorchScript actor, checked against the eager one; the policy
                        server loads it directly (its fast path)
    artifacts/actor.onnx
                        the same actor as ONNX (`rl_core.policy.onnx_export`), checked the same way;
                        the policy server's other runtime (ONNX Runtime). Folders saved before
                        it existed lack it and serve TorchScript
    pyfunc_policy.py    the pyfunc wrapper MLflow runs (imports torch, numpy, mlflow only)
    requirements.txt    pinned torch, numpy and mlflow (no dependency inference)

So `mlflow.pyfunc.load_model(...)` and `mlflow models serve -m ...` work on any registered
version, and act exactly like the trained actor.

A downloaded folder is untrusted input: `log_policy_model` records the sha256 of every file
on the LoggedModel (`rl_core.policy.policy_integrity`), and `load_registered_policy` refuses a
folder whose files differ from the digests the registry holds; the metadata is validated
(`PolicyMeta`), artifact paths must stay inside the folder, and the actor is audited
(`rl_core.policy.actor_audit`, `rl_core.policy.onnx_audit`) before any of its code runs. mlflow is
imported inside the functions: rl_core stays usable without it.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from rl_core.common.config import MODULE_NAME
from rl_core.envs.spec import EnvSpec
from rl_core.policy.export import export_actor, load_exported, real_observations
from rl_core.policy.onnx_export import OnnxActor, export_onnx, load_onnx
from rl_core.policy.policy_integrity import (
    DIGESTS_TAG,
    encode_digests,
    folder_digests,
    recorded_digests,
    verify_folder,
)
from rl_core.sac.networks import Actor

ACTOR_ARTIFACT = "actor"
"""Key of the TorchScript file among the pyfunc model's artifacts."""
ONNX_ARTIFACT = "actor_onnx"
"""Key of the ONNX file among the pyfunc model's artifacts (absent in older folders)."""
METADATA_KEY = "rlops"
"""Key of `PolicyMeta` in the MLmodel file's metadata."""
POLICY_FORMAT = 2
PYFUNC_CODE = Path(__file__).with_name("pyfunc_policy.py")
LOGGED_MODEL_NAME = "policy"


class PolicyFolderError(ValueError):
    """A folder that is not an rlops policy model; the message names what is missing."""


ENV_ID_PATTERN = r"^(?:[\w:-]+/)?[\w:.-]+$"
"""gymnasium's env id grammar (`[namespace/]name[-vN]`, the name may carry a `module:`
prefix): no spaces, no path separators beyond the one namespace slash."""
MAX_DIM = 65_536
"""Largest observation or action size a policy folder may declare."""


class PolicyMeta(BaseModel):
    """What a policy folder says about its actor (MLmodel metadata["rlops"]).

    Read from a downloaded folder, so validated like any untrusted input: the env it names is
    built by the monitor and its sizes drive the server's warm-up.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    env_id: str = Field(min_length=1, max_length=200, pattern=ENV_ID_PATTERN)
    obs_dim: int = Field(ge=1, le=MAX_DIM)
    act_dim: int = Field(ge=1, le=MAX_DIM)
    max_abs_diff_vs_eager: float = Field(ge=0.0, allow_inf_nan=False)
    observations_checked: int = Field(ge=0, le=2**31 - 1)
    torch_version: str = Field(min_length=1, max_length=64)
    onnx_max_abs_diff_vs_eager: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    """None: a folder saved before the ONNX export existed (it has no actor.onnx)."""
    format: int = Field(POLICY_FORMAT, ge=1, le=POLICY_FORMAT)
    env_packages: tuple[Annotated[str, Field(pattern=MODULE_NAME)], ...] = Field((), max_length=32)
    env_kwargs: dict[str, JsonValue] = Field(default_factory=dict)
    """Folders of format 1 name the env id alone: these default to nothing."""

    @property
    def env(self) -> EnvSpec:
        """How to build the env the policy acts in (evaluation, drift monitor)."""
        return EnvSpec(self.env_id, tuple(self.env_packages), dict(self.env_kwargs))


@dataclass(frozen=True)
class PolicyActors:
    """A folder's exported actors, loaded and audited: one per runtime it ships."""

    torchscript: torch.jit.ScriptModule
    onnx: OnnxActor | None
    """None for a folder saved before the ONNX export existed."""


@dataclass(frozen=True)
class LoggedPolicy:
    """A policy logged as an MLflow LoggedModel: register `model_uri` (with `model_id`)."""

    model_id: str
    model_uri: str
    digests: dict[str, str]
    """sha256 of each file of the folder, also the LoggedModel's `DIGESTS_TAG`."""


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

    The TorchScript and ONNX files are checked against the eager actor first (`export_actor`,
    `export_onnx` raise on a mismatch), so no folder exists for an export that differs from
    the trained policy.
    """
    pyfunc = _pyfunc()
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    env = EnvSpec.of(env)
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_actor(actor, Path(scratch) / "actor.pt", env)
        onnx = export_onnx(actor, Path(scratch) / "actor.onnx", env)
        meta = PolicyMeta(
            env_id=env.id,
            env_packages=env.packages,
            env_kwargs=dict(env.kwargs),
            obs_dim=actor.obs_dim,
            act_dim=actor.act_dim,
            max_abs_diff_vs_eager=exported.max_abs_diff,
            observations_checked=exported.n_checked,
            torch_version=str(torch.__version__),
            onnx_max_abs_diff_vs_eager=onnx.max_abs_diff,
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
            artifacts={ACTOR_ARTIFACT: str(exported.path), ONNX_ARTIFACT: str(onnx.path)},
            model_config={"actor_artifact": ACTOR_ARTIFACT},
            signature=signature,
            input_example=example,
            metadata={METADATA_KEY: meta.model_dump(mode="json")},
            pip_requirements=_requirements(),
        )
    return meta


def read_policy_meta(path: str | Path) -> tuple[PolicyMeta, dict[str, Path]]:
    """The folder's `PolicyMeta` and the paths of its artifacts by key (`ACTOR_ARTIFACT`, and
    `ONNX_ARTIFACT` when it has one); metadata that breaks `PolicyMeta` and an artifact path
    leading out of the folder are refused, naming the field."""
    from mlflow.models import Model

    path = Path(path)
    if not (path / "MLmodel").is_file():
        raise PolicyFolderError(f"{path} is not an MLflow model folder (no MLmodel file)")
    model = Model.load(str(path / "MLmodel"))
    raw: Any = (model.metadata or {}).get(METADATA_KEY)
    artifacts = model.flavors.get("python_function", {}).get("artifacts") or {}
    if raw is None or ACTOR_ARTIFACT not in artifacts:
        raise PolicyFolderError(
            f"{path} is an MLflow model but not an rlops policy (no metadata[{METADATA_KEY!r}] "
            f"or no {ACTOR_ARTIFACT!r} artifact); export one with `rlops export`"
        )
    try:
        meta = PolicyMeta.model_validate(raw)
    except ValidationError as exc:
        raise PolicyFolderError(
            f"{path}/MLmodel: invalid metadata.{METADATA_KEY}: {_field_errors(exc)}"
        ) from None
    files = {
        name: _inside(path, entry, f"flavors.python_function.artifacts.{name}.path")
        for name, entry in artifacts.items()
    }
    return meta, files


def _field_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'value'}: {error['msg']} (got "
        f"{str(error['input'])[:100]!r})"
        for error in exc.errors()
    )


def _inside(folder: Path, entry: Any, field: str) -> Path:
    """`entry["path"]` as a file inside `folder`: relative, no `..`, no symlink out."""
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str) or not relative:
        raise PolicyFolderError(f"{folder}/MLmodel: {field} must be a path, got {relative!r}")
    parts = PurePosixPath(relative).parts
    if PurePosixPath(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise PolicyFolderError(
            f"{folder}/MLmodel: {field} is {relative!r}; it must be a relative path inside "
            "the model folder (no absolute path, no '..')"
        )
    resolved = (folder / relative).resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise PolicyFolderError(
            f"{folder}/MLmodel: {field} {relative!r} leads out of the model folder (to "
            f"{resolved}) through a symlink"
        )
    return resolved


def load_policy_folder(path: str | Path) -> tuple[torch.jit.ScriptModule, PolicyMeta]:
    """The folder's TorchScript actor, loaded (`load_exported` audits it before any of its
    code runs), and its `PolicyMeta`. A registered version goes through
    `load_registered_policy`, which first checks the folder's files."""
    meta, files = read_policy_meta(path)
    return load_exported(files[ACTOR_ARTIFACT]), meta


def load_policy_actors(path: str | Path) -> tuple[PolicyActors, PolicyMeta]:
    """Every exported actor of the folder (each audited before any of its code runs) and its
    `PolicyMeta`."""
    meta, files = read_policy_meta(path)
    onnx_file = files.get(ONNX_ARTIFACT)
    onnx = load_onnx(onnx_file) if onnx_file is not None else None
    return PolicyActors(load_exported(files[ACTOR_ARTIFACT]), onnx), meta


def load_registered_policy(
    model_uri: str, registry_tags: Mapping[str, str], scratch: str | Path, what: str
) -> tuple[torch.jit.ScriptModule, PolicyMeta]:
    """Download `model_uri` into `scratch`, refuse it unless its files are the ones whose
    digests `registry_tags` record (the tags of the registered version or LoggedModel, read
    from the registry by the caller, never from the folder), then load its TorchScript actor.

    `what` names the model in errors (e.g. "rlops-sac-pendulum v3").
    """
    return load_policy_folder(_download_verified(model_uri, registry_tags, scratch, what))


def load_registered_actors(
    model_uri: str, registry_tags: Mapping[str, str], scratch: str | Path, what: str
) -> tuple[PolicyActors, PolicyMeta]:
    """`load_registered_policy`, loading every runtime's actor (TorchScript, ONNX)."""
    return load_policy_actors(_download_verified(model_uri, registry_tags, scratch, what))


def _download_verified(
    model_uri: str, registry_tags: Mapping[str, str], scratch: str | Path, what: str
) -> Path:
    from mlflow.artifacts import download_artifacts

    expected = recorded_digests(registry_tags, what)
    folder = Path(download_artifacts(model_uri, dst_path=str(scratch)))
    verify_folder(folder, expected, what)
    return folder


def log_policy_model(
    actor: Actor, env: EnvSpec | str, run_id: str, tags: dict[str, str] | None = None
) -> LoggedPolicy:
    """Save the policy folder and log it as a LoggedModel of MLflow run `run_id`.

    The model is created, uploaded and only then marked READY, so a crash in between leaves
    a model that is never READY (callers looking for a finished one skip it). It is created
    with the sha256 of each file as its `DIGESTS_TAG`, which registering copies onto the
    version and every load checks.
    """
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    client = MlflowClient()
    experiment_id = client.get_run(run_id).info.experiment_id
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "policy"
        save_policy_model(actor, env, folder)
        digests = folder_digests(folder)
        model = client.create_logged_model(
            experiment_id,
            name=LOGGED_MODEL_NAME,
            source_run_id=run_id,
            tags={**(tags or {}), DIGESTS_TAG: encode_digests(digests)},
        )
        client.log_model_artifacts(model.model_id, str(folder))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return LoggedPolicy(model.model_id, f"models:/{model.model_id}", digests)
