"""How registered models are named when a run does not name one.

Imported by the DAG's form (through the pipeline settings), so it imports nothing heavy.
"""

from __future__ import annotations

import re


def default_model_name(env_id: str) -> str:
    """The registered model a run on `env_id` goes to unless it names one: `rlops-sac-` and
    the env's name, lower case, without module, namespace or version ("Pendulum-v1" ->
    "rlops-sac-pendulum", "my_envs:Reacher-v2" -> "rlops-sac-reacher"). Two versions of an
    env share the name; the pipeline refuses to mix them in one model."""
    name = env_id.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    name = re.sub(r"-v\d+$", "", name).lower()
    name = re.sub(r"[^a-z0-9_.]+", "-", name).strip("-") or "env"
    return f"rlops-sac-{name}"[:100]
