"""Who may do what on rlops' MLflow: the users of its basic-auth app and their least permissions.

One setup for compose (its `mlflow-init` service) and devstack, run as MLflow's admin:

    python -m rlops_registry.access setup

- `airflow` (the pipeline's and the monitor's tasks): MANAGE on every registered model (it moves
  and deletes aliases) and EDIT on every experiment, through the role `rlops-pipeline`, so that
  models and experiments made before auth or by someone else stay the pipeline's.
- `policy-server`: the server's default READ on models; EDIT on the served-episodes experiment
  only, which setup creates.
- `viewer` (people): the default READ on everything.

The server's `default_permission` is READ: a model the pipeline registers later
(`rlops-sac-<env>`) is readable by everyone and writable by its creator (airflow) and admins.

Environment: MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (the
admin's), and one `RLOPS_MLFLOW_<USER>_PASSWORD` per user (see `password_env`). Setup is
idempotent: run again, it resets each user's password to the one given and keeps the grants.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlflow.exceptions import MlflowException

from rl_core.common.tracking import get_or_create_experiment
from rlops_registry.served_episodes import served_experiment

if TYPE_CHECKING:
    from mlflow.server.auth.client import AuthServiceClient

DEFAULT_PERMISSION = "READ"
"""The basic-auth app's `default_permission` that these grants are designed for."""
PIPELINE_ROLE = "rlops-pipeline"
DEFAULT_WORKSPACE = "default"  # where MLflow keeps roles when workspaces are off


@dataclass(frozen=True)
class User:
    """One MLflow user of rlops and what it is for."""

    name: str
    purpose: str


AIRFLOW = User("airflow", "Airflow's tasks: create and edit experiments, runs and models")
POLICY_SERVER = User("policy-server", "reads models; writes only the served-episodes experiment")
VIEWER = User("viewer", "people: read-only")
USERS = (AIRFLOW, POLICY_SERVER, VIEWER)


def password_env(user: User) -> str:
    """The variable that holds `user`'s password, e.g. RLOPS_MLFLOW_POLICY_SERVER_PASSWORD."""
    return f"RLOPS_MLFLOW_{user.name.upper().replace('-', '_')}_PASSWORD"


def client_env(tracking_uri: str, username: str, password: str) -> dict[str, str]:
    """What an MLflow client process needs to act as `username`."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_TRACKING_USERNAME": username,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def _missing(error: MlflowException) -> bool:
    return error.error_code == "RESOURCE_DOES_NOT_EXIST"


def _exists(error: MlflowException) -> bool:
    return error.error_code == "RESOURCE_ALREADY_EXISTS"


def ensure_user(auth: AuthServiceClient, user: User, password: str) -> None:
    """Create `user`, or set its password to `password` when it exists."""
    try:
        auth.get_user(user.name)
    except MlflowException as error:
        if not _missing(error):
            raise
        auth.create_user(user.name, password)
        return
    auth.update_user_password(user.name, password)


def ensure_pipeline_role(auth: AuthServiceClient) -> None:
    """The role `rlops-pipeline` (MANAGE models, EDIT experiments), assigned to airflow."""
    roles = {role.name: role for role in auth.list_roles(DEFAULT_WORKSPACE)}
    role = roles.get(PIPELINE_ROLE) or auth.create_role(
        DEFAULT_WORKSPACE, PIPELINE_ROLE, "rlops pipeline tasks (the airflow user)"
    )
    wanted = {("registered_model", "*", "MANAGE"), ("experiment", "*", "EDIT")}
    have = {
        (p.resource_type, p.resource_pattern, p.permission)
        for p in auth.list_role_permissions(role.id)
    }
    for resource_type, pattern, permission in sorted(wanted - have):
        auth.add_role_permission(role.id, resource_type, pattern, permission)
    if PIPELINE_ROLE not in {r.name for r in auth.list_user_roles(AIRFLOW.name)}:
        auth.assign_role(AIRFLOW.name, role.id)


def setup(tracking_uri: str, passwords: dict[str, str]) -> str:
    """Users, the pipeline role, and the served-episodes experiment writable by the server.

    Runs with the admin's credentials in MLFLOW_TRACKING_USERNAME/PASSWORD. Returns the
    served-episodes experiment's id.
    """
    # Imported here: mlflow.server warns at import (Starlette), which clients need not see.
    from mlflow import MlflowClient
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(tracking_uri)
    for user in USERS:
        ensure_user(auth, user, passwords[user.name])
    ensure_pipeline_role(auth)
    experiment_id = get_or_create_experiment(MlflowClient(tracking_uri), served_experiment())
    grant = (POLICY_SERVER.name, "experiment", experiment_id)
    try:
        auth.grant_user_permission(*grant, "EDIT")
    except MlflowException as error:
        if not _exists(error):
            raise
        auth.revoke_user_permission(*grant)  # a grant of another level: replace it
        auth.grant_user_permission(*grant, "EDIT")
    return experiment_id


def _passwords_from_env() -> dict[str, str]:
    missing = [password_env(user) for user in USERS if not os.environ.get(password_env(user))]
    if missing:
        raise SystemExit(f"set {', '.join(missing)} (one password per MLflow user)")
    return {user.name: os.environ[password_env(user)] for user in USERS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlops_registry.access", description=__doc__)
    parser.add_argument("command", choices=["setup"])
    parser.parse_args(argv)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri or not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        raise SystemExit("set MLFLOW_TRACKING_URI, and MLFLOW_TRACKING_USERNAME/PASSWORD (admin)")
    experiment_id = setup(uri, _passwords_from_env())
    for user in USERS:
        print(f"MLflow user {user.name}: {user.purpose}")
    print(f"served-episodes experiment {served_experiment()} (id {experiment_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
