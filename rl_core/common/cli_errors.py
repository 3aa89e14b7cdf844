"""Which failures are the user's input, and the one line each becomes on the command line.

Every `rlops` command goes through `user_error`: an exception of a type in `USER_ERRORS` (a
bad config, an env SAC cannot train on, a file that is no checkpoint or policy, a registry URI
that names nothing, an unreachable MLflow server) is something the user can fix, so the CLI
prints its message as one line and exits 2. Anything else is a bug in rlops and keeps its
traceback.
"""

from __future__ import annotations

import sys

USER_ERRORS = (
    ("rl_core.common.config", "ConfigError"),
    ("rl_core.envs.spec", "EnvError"),
    ("rl_core.policy.checkpoint", "CheckpointError"),
    ("rl_core.policy.policy_source", "PolicySourceError"),
    ("rl_core.run.reproduce", "ReproduceError"),
    ("rl_core.common.tracking", "TrackingServerUnreachable"),
    ("rl_core.evaluation.video", "RenderError"),
)
"""(module, exception class): looked up among loaded modules only, since an exception of a
module never imported cannot have been raised, and importing torch to judge a config error
would cost seconds."""
MLFLOW_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST"})
"""MLflow error codes meaning the run, model or alias the user named does not exist."""


def _loaded(module: str, name: str) -> type[BaseException] | None:
    return getattr(sys.modules.get(module), name, None)


def _is_user_error(exc: BaseException) -> bool:
    known = tuple(filter(None, (_loaded(module, name) for module, name in USER_ERRORS)))
    if isinstance(exc, known):
        return True
    mlflow_error = _loaded("mlflow.exceptions", "MlflowException")
    return mlflow_error is not None and (
        isinstance(exc, mlflow_error) and exc.error_code in MLFLOW_NOT_FOUND
    )


def one_line(text: str) -> str:
    """The message's lines joined with '; ', so a terminal or a log shows it as one line."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def user_error(exc: BaseException) -> str | None:
    """The one-line message for a failure caused by the user's input; None for a bug."""
    if _is_user_error(exc):
        return one_line(str(exc)) or type(exc).__name__
    return None
