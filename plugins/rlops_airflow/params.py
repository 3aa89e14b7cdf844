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


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with every `$ref` to a definition replaced by the definition, at any depth
    (a Param's schema is validated on its own, without the model's `$defs`)."""
    if isinstance(schema, list):
        return [_inlined(item, definitions) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        referenced = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {key: value for key, value in referenced.items() if key != "title"}
        schema = {**merged, **{k: v for k, v in schema.items() if k != "$ref"}}
    return {key: _inlined(value, definitions) for key, value in schema.items()}


def _nullable_as_type_list(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's `anyOf: [{type: T, ...}, {type: null}]` (pydantic's `T | None`) as
    `type: [T, "null"]` with T's keywords: the form Airflow draws an optional field from (an
    empty text field is sent as null), and the same values valid."""
    options = schema.get("anyOf", [])
    if len(options) != 2 or {"type": "null"} not in options:
        return schema
    (value,) = (option for option in options if option != {"type": "null"})
    flattened = {key: item for key, item in schema.items() if key != "anyOf"}
    return {**flattened, **value, "type": [value["type"], "null"]}


def settings_params(model: type[BaseModel], omit: frozenset[str] = frozenset()) -> dict[str, Param]:
    """One Param per field of a settings model, in field order, with its default; fields in
    `omit` are left to the conf (not shown in the form)."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    params = {}
    for name, field in model.model_fields.items():
        if name in omit:
            continue
        field_schema = _inlined(dict(schema["properties"][name]), definitions)
        field_schema = _nullable_as_type_list(field_schema)
        field_schema.pop("default", None)
        description = field_schema.pop("description")
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):  # sac_overrides: nothing overridden
            default = default.model_dump(exclude_unset=True)
        params[name] = Param(default, description=description, **field_schema)
    return params


LINEAGE_FIELDS = frozenset({"tuned_by", "drift_retrain_of"})
"""Set by a DAG that triggers another (the conf carries them), never typed in a form: Airflow's
form sends an empty text field as null, which a string param refuses."""


def pipeline_params() -> dict[str, Param]:
    """The pipeline DAG's Params: every `PipelineSettings` field but the lineage ones."""
    return settings_params(PipelineSettings, omit=LINEAGE_FIELDS)
