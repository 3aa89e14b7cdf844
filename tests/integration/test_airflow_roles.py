"""Airflow's roles on the devstack (SimpleAuthManager): an operator may trigger the pipeline, a
viewer may only look. Both are real logins through `/auth/token`, as the UI makes them."""

from __future__ import annotations

import pytest

from devstack import Stack
from tests.integration.conftest import DAG_FILE, DAG_ID, DAG_PATH, AirflowApi

# Refused by the DAG's Params at once (400): nothing is queued when the caller may trigger.
BAD_CONF = {"total_timesteps": "many"}


@pytest.mark.parametrize(("user", "status"), [("viewer", 403), ("operator", 400)])
def test_only_the_operator_may_trigger_the_pipeline(
    stack: Stack, pipeline_api: AirflowApi, user: str, status: int
) -> None:
    with AirflowApi(stack, DAG_ID, dag_file=DAG_FILE, user=user) as api:
        assert api.get(DAG_PATH)["dag_id"] == DAG_ID  # both may read the DAG
        before = api.get(f"{DAG_PATH}/dagRuns")["total_entries"]
        response = api.trigger(BAD_CONF)
        after = api.get(f"{DAG_PATH}/dagRuns")["total_entries"]
    assert response.status_code == status, response.text
    assert after == before  # no run either way
