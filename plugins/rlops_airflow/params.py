"""The pipeline DAG's Params, generated from `PipelineSettings`' JSON schema.

So the trigger form shows, and the REST API enforces (400 naming the param), exactly the
bounds, allowed values and patterns the task code validates with; `sac_overrides` carries the
schema of every overridable SACConfig field with `additionalProperties: false`, so a typo
there is refused at trigger time too. Airflow cannot refuse an unknown *top-level* key at
trigger time; the DAG's first task, `validate_conf`, does.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param
from pydantic import BaseModel

from rlops_airflow.settings import PipelineSettings


def _inline(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """Replace a `$ref` to a definition by the definition itself (the field's keys win)."""
    if "$ref" not in schema:
        return schema
    referenced = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    inlined = {key: value for key, value in referenced.items() if key != "title"}
    return {**inlined, **{k: v for k, v in schema.items() if k != "$ref"}}


def pipeline_params() -> dict[str, Param]:
    """One Param per `PipelineSettings` field, in field order, with its default."""
    schema = PipelineSettings.model_json_schema()
    definitions = schema.get("$defs", {})
    params = {}
    for name, field in PipelineSettings.model_fields.items():
        field_schema = _inline(dict(schema["properties"][name]), definitions)
        field_schema.pop("default", None)
        description = field_schema.pop("description")
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):  # sac_overrides: nothing overridden
            default = default.model_dump(exclude_unset=True)
        params[name] = Param(default, description=description, **field_schema)
    return params
