"""The MLflow model registry as rlops uses it: versions, tags and aliases.

Aliases, not the deprecated stages: `champion` is what is served, `challenger` the newest
candidate, `previous_champion` the version `champion` replaced, so a rollback is one call.
Every write is idempotent, so a retried task never duplicates a version or moves an alias twice.
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from rl_core.policy.policy_integrity import encode_digests, recorded_digests
from rlops_registry import tags

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
MODELS_PER_PAGE = 100


class NoPreviousChampion(RuntimeError):
    """A rollback was asked for but no earlier champion is recorded."""


class ModelRegistry:
    """Registry operations for one registered model name."""

    def __init__(self, name: str, client: MlflowClient | None = None) -> None:
        self.name = name
        self.client = client or MlflowClient()

    def ensure_model(self) -> None:
        """Create the registered model unless it exists."""
        try:
            self.client.create_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def version_for_run_key(self, run_key: str) -> ModelVersion | None:
        """The version an Airflow DAG run already registered, if any."""
        found = self.client.search_model_versions(
            f"name = '{_quoted(self.name)}' and tags.`{tags.RUN_KEY}` = '{_quoted(run_key)}'",
            order_by=["version_number ASC"],
        )
        return found[0] if found else None

    def register(
        self,
        model_uri: str,
        model_id: str | None,
        run_id: str,
        run_key: str,
        version_tags: dict[str, Any],
    ) -> ModelVersion:
        """A version of the model at `model_uri` (a LoggedModel's `models:/<model_id>`), made
        by MLflow run `run_id`; the existing version on a retry of the same Airflow run.

        The LoggedModel's file digests are copied onto the version (`tags.ARTIFACT_SHA256`,
        on a retry too): what every loader checks the version's files against. A LoggedModel
        that records none is refused.
        """
        self.ensure_model()
        if model_id is not None:
            logged = self.client.get_logged_model(model_id)
            digests = recorded_digests(logged.tags, f"LoggedModel {model_id}")
            version_tags = {**version_tags, tags.ARTIFACT_SHA256: encode_digests(digests)}
        existing = self.version_for_run_key(run_key)
        if existing is not None:
            self.set_tags(existing.version, version_tags)
            return existing
        return self.client.create_model_version(
            self.name,
            source=model_uri,
            run_id=run_id,
            model_id=model_id,
            tags={**_as_strings(version_tags), tags.RUN_KEY: run_key},
        )

    def latest_version(self) -> ModelVersion | None:
        """The most recently registered version, or None when the model has none."""
        found = self.client.search_model_versions(
            f"name = '{_quoted(self.name)}'", max_results=1, order_by=["version_number DESC"]
        )
        return found[0] if found else None

    def version(self, version: str | int) -> ModelVersion:
        return self.client.get_model_version(self.name, str(version))

    def alias(self, alias: str) -> ModelVersion | None:
        """The version an alias points to, or None if the alias (or model) is unset."""
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as exc:
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                return None
            raise

    def set_alias(self, alias: str, version: str | int) -> None:
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def set_tags(self, version: str | int, version_tags: dict[str, Any]) -> None:
        for key, value in _as_strings(version_tags).items():
            self.client.set_model_version_tag(self.name, str(version), key, value)

    def crown(self, version: str | int) -> ModelVersion | None:
        """Make `version` the champion; returns the champion it replaced (None if none).

        Re-crowning the current champion changes nothing, so a re-run of promote is harmless.
        """
        current = self.alias(CHAMPION)
        if current is not None and str(current.version) == str(version):
            return None
        if current is not None:
            self.set_alias(PREVIOUS_CHAMPION, current.version)
            self.set_tags(version, {tags.REPLACED_VERSION: current.version})
        self.set_alias(CHAMPION, version)
        return current

    def rollback(self) -> ModelVersion:
        """Point `champion` back at `previous_champion`, and walk `previous_champion` one
        step further back (to what that version had replaced), so rollbacks can repeat."""
        previous = self.alias(PREVIOUS_CHAMPION)
        if previous is None:
            raise NoPreviousChampion(f"model {self.name!r} has no {PREVIOUS_CHAMPION!r} alias")
        self.set_alias(CHAMPION, previous.version)
        earlier = previous.tags.get(tags.REPLACED_VERSION)
        if earlier:
            self.set_alias(PREVIOUS_CHAMPION, earlier)
        else:
            self.client.delete_registered_model_alias(self.name, PREVIOUS_CHAMPION)
        return previous


def models_with_champion(client: MlflowClient | None = None) -> list[str]:
    """Names of the registered models whose `champion` is an rlops policy (its version
    records the env it plays, `env_id`), in name order: what the monitor watches by default.

    A model of other tooling is left out: nothing could rebuild the env to evaluate it.
    """
    client = client or MlflowClient()
    names: list[str] = []
    token = None
    while True:
        page = client.search_registered_models(
            max_results=MODELS_PER_PAGE, order_by=["name ASC"], page_token=token
        )
        for model in page:
            if CHAMPION not in model.aliases:
                continue
            champion = ModelRegistry(model.name, client).alias(CHAMPION)
            if champion is not None and champion.tags.get(tags.ENV_ID):
                names.append(model.name)
        token = page.token
        if not token:
            return names


def _as_strings(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items()}


def _quoted(value: str) -> str:
    """Refuse what would break out of a quoted MLflow filter value."""
    if "'" in value:
        raise ValueError(f"{value!r} may not contain a single quote")
    return value
