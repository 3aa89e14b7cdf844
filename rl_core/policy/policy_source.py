"""What a user points the CLI at: a policy, wherever and in whatever form it is.

A training checkpoint, an actor file, a policy folder written by `rlops export`, or an MLflow
URI to any of them: `runs:/<run id>/<path>`, `models:/<name>@<alias>`, `models:/<name>/<version>`.
A source that is none of these is a `PolicySourceError` whose message names it and lists what
is accepted; the CLI prints that one line and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rl_core.common.artifact_names import ACTOR_FILE, CHECKPOINT_FILE
from rl_core.common.cli_errors import one_line

if TYPE_CHECKING:  # torch and the loaders load when a policy is opened, not on import
    import torch

    from rl_core.envs.spec import EnvSpec
    from rl_core.evaluation.episodes import Policy
    from rl_core.sac.networks import Actor

ACCEPTED = (
    f"a {CHECKPOINT_FILE}, an {ACTOR_FILE}, a policy folder from `rlops export`, "
    "runs:/<run id>/<path>, models:/<name>@<alias> or models:/<name>/<version>"
)


class PolicySourceError(ValueError):
    """Not a policy rlops can load; the message names the source and what is accepted."""


@dataclass(frozen=True)
class PolicySource:
    """A loaded policy: the eager actor when the source has one, else the exported actor."""

    env: EnvSpec
    actor: Actor | None
    exported: torch.jit.ScriptModule | None

    def policy(self) -> Policy:
        from rl_core.evaluation.episodes import actor_policy
        from rl_core.policy.export import exported_policy

        return (
            actor_policy(self.actor) if self.actor is not None else exported_policy(self.exported)
        )

    def trained_actor(self, reference: str, what: str) -> Actor:
        """The eager actor, or an error saying `what` needs one."""
        if self.actor is None:
            raise PolicySourceError(
                f"{reference} is an exported policy; {what} needs the trained actor "
                "(a checkpoint.pt or actor.pt, or runs:/<run id>/actor)"
            )
        return self.actor


def _local_copy(reference: str, scratch: Path) -> Path:
    if not reference.startswith(("runs:/", "models:/")):
        path = Path(reference)
        if not path.exists():
            raise PolicySourceError(f"{reference}: no such file or folder; give {ACCEPTED}")
        return path
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from rl_core.common.tracking import bound_mlflow_requests, wait_for_tracking_server

    bound_mlflow_requests()
    wait_for_tracking_server()  # a bounded wait naming the server, not minutes of retries
    try:
        return Path(mlflow.artifacts.download_artifacts(reference, dst_path=str(scratch)))
    except (MlflowException, OSError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise PolicySourceError(f"{reference}: {reason}") from None


def _check_mlmodel_is_yaml(reference: str, mlmodel: Path) -> None:
    """MLflow's `Model.load` fails on a foreign or cut-off MLmodel with whatever error its
    parser hits; this says so by name first."""
    import yaml

    try:
        parsed = yaml.safe_load(mlmodel.read_text(errors="replace"))
    except yaml.YAMLError as exc:
        problem = f"is not YAML ({one_line(str(exc))})"
    else:
        if isinstance(parsed, dict):
            return
        problem = f"holds a {type(parsed).__name__}, not an MLflow model's mapping"
    raise PolicySourceError(f"{reference}: its MLmodel {problem}; give {ACCEPTED}")


def open_policy(reference: str, scratch: Path) -> PolicySource:
    """Load the policy `reference` names (MLflow URIs are downloaded into `scratch`)."""
    from rl_core.policy.actor_audit import ActorAuditError
    from rl_core.policy.checkpoint import CheckpointError, load_actor
    from rl_core.policy.policy_model import PolicyFolderError, load_policy_folder

    path = _local_copy(reference, scratch)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            _check_mlmodel_is_yaml(reference, path / "MLmodel")
            try:
                exported, meta = load_policy_folder(path)
            except PolicyFolderError as exc:  # names the folder already
                raise PolicySourceError(str(exc)) from None
            except ActorAuditError as exc:  # names the file within the folder
                raise PolicySourceError(f"{reference}: {exc}") from None
            return PolicySource(meta.env, None, exported)
        files = [path / name for name in (ACTOR_FILE, CHECKPOINT_FILE) if (path / name).is_file()]
        if not files:
            raise PolicySourceError(
                f"{reference}: a folder with no MLmodel, {ACTOR_FILE} or {CHECKPOINT_FILE}; "
                f"give {ACCEPTED}"
            )
        path = files[0]
    try:
        actor, env = load_actor(path)
    except CheckpointError as exc:  # missing, foreign or truncated: the reason says which
        raise PolicySourceError(f"{reference}: {exc.reason}; give {ACCEPTED}") from None
    except (ValueError, RuntimeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PolicySourceError(
            f"{reference}: not a policy rlops can load ({reason}); give {ACCEPTED}"
        ) from None
    return PolicySource(env, actor, None)
