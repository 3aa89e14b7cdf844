"""The fault matrix: a service of the stack fails in the middle of a pipeline run, comes back,
and the run completes with nothing lost.

Each test injects one fault on a LocalExecutor stack of the module's own (so the faults run
beside the other integration tests, on the other pytest-xdist worker), through `Stack.restart` (the
service comes back on its port, with its data) or, for S3, SIGSTOP / SIGCONT (moto keeps its
objects in RAM: a restarted one would come back empty), or, for the disk, a small tmpfs on the
tasks' TMPDIR filled to the last byte, so later tests find the stack whole.
Each then checks the same outcome: the run succeeds, its candidate is one MLflow run with at
most one model version, the model's aliases point at that version, and no process of the stack
is left over outside its services. Each prints its row of the fault table: what the user saw
and how long the recovery took.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow import MlflowClient

from devstack import Stack, StackError
from devstack.processes import free_port
from devstack.scratch import temporary_stack
from devstack.stack import ORPHANED_TASKS_CHECK_INTERVAL
from rl_core.common.artifact_names import CHECKPOINT_FILE
from rlops_airflow.mlflow_run import AirflowRun
from tests.full_disk import fill, small_disk
from tests.integration.conftest import (
    CHECKPOINT,
    DAG_ID,
    TINY_CONF,
    AirflowApi,
    candidate_runs,
    checkpointed_run,
    pipeline_api_of,
    poll,
)

pytestmark = pytest.mark.integration

SEED = 3
# The shortest training the form allows, still mid-way after its first checkpoint; a small
# network on one thread, so that it trains in seconds even while the suite loads both cores.
FAULT_CONF = {
    **TINY_CONF,
    "seed": SEED,
    "total_timesteps": 1000,
    "checkpoint_every": 200,
    "eval_episodes": 1,
    "record_video": False,
    "sac_overrides": {"hidden_sizes": [32, 32], "batch_size": 32, "torch_threads": 1},
}


@pytest.fixture(scope="module")
def task_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tasks' TMPDIR (where checkpoints are written before their upload): a plain folder,
    on which the disk test mounts a small disk."""
    return tmp_path_factory.mktemp("task-tmp")


@pytest.fixture(scope="module")
def stack(task_tmpdir: Path) -> Iterator[Stack]:
    """The module's own stack: the faults below break and heal it, one after another."""
    with temporary_stack("rlops-faults-", task_tmpdir=task_tmpdir) as running:
        yield running


@pytest.fixture(scope="module")
def pipeline_api(stack: Stack) -> Iterator[AirflowApi]:
    """The pipeline on the module's stack, ready for manual runs."""
    yield from pipeline_api_of(stack)


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """An MLflow client logged in as the pipeline's user."""
    for name, value in stack.mlflow_client_env().items():
        monkeypatch.setenv(name, value)
    return MlflowClient()


def _train_state(api: AirflowApi, run_id: str) -> tuple[str | None, int]:
    """State and try number of the run's one `train` task instance."""
    (train,) = [ti for ti in api.task_instances(run_id) if ti["task_id"] == "train"]
    return train["state"], train["try_number"]


def _strays(stack: Stack) -> list[str]:
    """Processes of this stack's Airflow outside the process group of every running service: a
    task runner or executor worker left behind by a dead parent."""
    home = str(stack.state_dir / "airflow")
    groups = {ref.pid for ref in stack.processes.values() if ref.members()}
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.environ().get("AIRFLOW_HOME") == home and os.getpgid(proc.pid) not in groups:
                found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
            continue
    return found


def _assert_nothing_lost(
    stack: Stack, api: AirflowApi, client: MlflowClient, run_id: str, model: str
) -> dict[str, Any]:
    """The run succeeded; one MLflow run and at most one version for its candidate; aliases on
    that version; no stray process. The run's JSON."""
    run = api.wait_for_run(run_id)
    assert run["state"] == "success", api.tasks(run_id)
    key = AirflowRun(DAG_ID, run_id).candidate_key(SEED)
    (mlflow_run,) = candidate_runs(client, key)
    (version,) = client.search_model_versions(f"name = '{model}'")
    assert version.run_id == mlflow_run
    aliases = client.get_registered_model(model).aliases
    assert aliases == {"challenger": version.version, "champion": version.version}
    poll(lambda: _strays(stack) == [] or None, "end of every task process", timeout=30)
    assert all(stack.service_states().values()), stack.service_states()
    health = api.get("/api/v2/monitor/health")
    assert {part["status"] for part in health.values()} <= {"healthy", None}, health
    return run


def _timeline(api: AirflowApi, run_id: str) -> str:
    """`task[map] try duration` of every task instance: where the run's time went."""
    return ", ".join(
        f"{ti['task_id']} try {ti['try_number']} {ti['duration'] or 0:.0f}s"
        for ti in api.task_instances(run_id)
    )


def _mid_training(api: AirflowApi, client: MlflowClient, run_id: str) -> str:
    """Once the run's training has a checkpoint in the artifact store and still runs: its
    MLflow run."""
    key = AirflowRun(DAG_ID, run_id).candidate_key(SEED)
    mlflow_run = poll(lambda: checkpointed_run(client, key), "checkpoint in the artifact store")
    assert _train_state(api, run_id) == ("running", 1), "trained before the fault"
    return mlflow_run


def test_postgres_crashing_mid_training_loses_nothing(
    stack: Stack, pipeline_api: AirflowApi, client: MlflowClient
) -> None:
    model = "rlops-fault-postgres"
    began = time.monotonic()
    run_id = pipeline_api.start_run({**FAULT_CONF, "registered_model_name": model})
    mlflow_run = _mid_training(pipeline_api, client, run_id)

    crashed = time.monotonic()
    stack.restart("postgres", kill=True)  # Airflow's and MLflow's databases, at once
    back = time.monotonic()
    _assert_nothing_lost(stack, pipeline_api, client, run_id, model)
    done = time.monotonic()
    tries = pipeline_api.task_tries(run_id, "train", map_index=0)
    print(
        f"postgres crash: down {back - crashed:.1f} s, run done {done - crashed:.1f} s after, "
        f"{done - began:.1f} s in all; train tries {[ti['try_number'] for ti in tries]}, "
        f"mlflow run {mlflow_run}\n{_timeline(pipeline_api, run_id)}"
    )


def test_api_server_restarted_while_a_run_is_queued_loses_nothing(
    stack: Stack, pipeline_api: AirflowApi, client: MlflowClient
) -> None:
    model = "rlops-fault-apiserver"
    api = pipeline_api
    api.patch(api.dag_path, {"is_paused": True})  # the run waits in the queue
    try:
        run_id = api.start_run({**FAULT_CONF, "registered_model_name": model})
        time.sleep(3)  # a few scheduler loops: a paused DAG's run stays queued
        assert api.get(api.run_path(run_id))["state"] == "queued"
        stopped = time.monotonic()
        stack.restart("airflow-apiserver", kill=True)
        back = time.monotonic()
        assert api.get(api.run_path(run_id))["state"] == "queued"  # same token, same run
    finally:
        api.patch(api.dag_path, {"is_paused": False})
    _assert_nothing_lost(stack, api, client, run_id, model)
    print(f"api server killed, back in {back - stopped:.1f} s\n{_timeline(api, run_id)}")


def test_scheduler_killed_mid_training_resumes_from_the_checkpoint(
    stack: Stack, pipeline_api: AirflowApi, client: MlflowClient
) -> None:
    model = "rlops-fault-scheduler"
    api = pipeline_api
    run_id = api.start_run({**FAULT_CONF, "registered_model_name": model})
    _mid_training(api, client, run_id)

    # kill -9 of the scheduler with its LocalExecutor workers and the task they run,
    killed_at = datetime.now(UTC)
    killed = time.monotonic()
    stack.restart("airflow-scheduler", kill=True)
    back = time.monotonic()
    _assert_nothing_lost(stack, api, client, run_id, model)
    done = time.monotonic()

    # the new scheduler reset the orphaned try within minutes (Airflow's default interval
    # alone is 5), and the next one resumed from the stored checkpoint.
    tries = api.task_tries(run_id, "train", map_index=0)
    assert [ti["try_number"] for ti in tries] == [1, 2]
    restarted = datetime.fromisoformat(tries[1]["start_date"])
    assert (restarted - killed_at).total_seconds() < 5 * ORPHANED_TASKS_CHECK_INTERVAL
    log = api.task_log(run_id, "train", try_number=2, map_index=0)
    resumed = re.search(r"resumed from \S+ at step (\d+)", log)
    assert resumed, log[-3000:]
    assert FAULT_CONF["checkpoint_every"] <= int(resumed[1]) < FAULT_CONF["total_timesteps"]
    print(
        f"scheduler killed: back in {back - killed:.1f} s, train try 2 "
        f"{(restarted - killed_at).total_seconds():.0f} s after the kill, run done "
        f"{done - killed:.1f} s after, resumed at step {resumed[1]}\n{_timeline(api, run_id)}"
    )


S3_OUTAGE = 15.0  # seconds: a few checkpoint uploads' worth of training


def test_s3_down_during_checkpoint_uploads_loses_nothing(
    stack: Stack, pipeline_api: AirflowApi, client: MlflowClient
) -> None:
    """The S3 server stops answering (SIGSTOP: it keeps its objects, as a real store would; moto
    restarted would come back empty) while training uploads checkpoints, then answers again."""
    model = "rlops-fault-s3"
    api = pipeline_api
    run_id = api.start_run({**FAULT_CONF, "registered_model_name": model})
    mlflow_run = _mid_training(api, client, run_id)

    s3_log = stack.log("s3")
    offset = s3_log.stat().st_size
    group = stack.processes["s3"].pid
    os.killpg(group, signal.SIGSTOP)
    try:
        time.sleep(S3_OUTAGE)
    finally:
        os.killpg(group, signal.SIGCONT)
    resumed = time.monotonic()
    _assert_nothing_lost(stack, api, client, run_id, model)
    done = time.monotonic()

    # The uploads held during the outage reached S3 afterwards, on the first try of training.
    with s3_log.open("rb") as log:
        log.seek(offset)
        after = log.read().decode(errors="replace")
    assert f"PUT /{stack.bucket}/" in after and f"{mlflow_run}/artifacts/{CHECKPOINT}" in after
    assert [ti["try_number"] for ti in api.task_tries(run_id, "train", map_index=0)] == [1]
    print(
        f"S3 down {S3_OUTAGE:.0f} s: run done {done - resumed:.1f} s after it answered again\n"
        f"{_timeline(api, run_id)}"
    )


TASK_DISK = 8 * 2**20  # bytes: a few checkpoints of FAULT_CONF's size, and Airflow's own files


def test_disk_full_during_checkpoints_fails_in_one_line_and_a_retry_completes(
    stack: Stack, pipeline_api: AirflowApi, client: MlflowClient, task_tmpdir: Path
) -> None:
    """The tasks' temporary disk fills up mid-training: the checkpoints along the way are
    skipped (a warning each), the final one fails the try with one line naming the folder and
    what to do; once there is room again, the retry resumes from the last stored checkpoint."""
    model = "rlops-fault-disk"
    api = pipeline_api
    with small_disk(task_tmpdir, TASK_DISK) as disk:
        run_id = api.start_run({**FAULT_CONF, "registered_model_name": model})
        _mid_training(api, client, run_id)
        filler = fill(disk)
        filled = time.monotonic()
        poll(
            lambda: _train_state(api, run_id)[0] == "up_for_retry" or None,
            "train failing on the full disk",
        )
        failed = time.monotonic()
        filler.unlink()
        _assert_nothing_lost(stack, api, client, run_id, model)
    done = time.monotonic()

    tries = api.task_tries(run_id, "train", map_index=0)
    assert [ti["try_number"] for ti in tries] == [1, 2]
    first = api.task_log(run_id, "train", try_number=1, map_index=0)
    no_room = (
        rf"no room for {CHECKPOINT_FILE} in {disk}/tmp\w+: 0 KiB free, it needs at least \d+ "
        r"KiB; free space there or point TMPDIR at a larger disk"
    )
    error = re.search(rf"DiskFullError.{{0,40}}({no_room})", first)
    assert error, first[-3000:]
    skipped = re.findall(rf"checkpoint at step (\d+) skipped, .*?: {no_room}", first)
    resumed = re.search(
        r"resumed from \S+ at step (\d+)", api.task_log(run_id, "train", try_number=2, map_index=0)
    )
    assert resumed, "the retry trained from scratch"
    assert FAULT_CONF["checkpoint_every"] <= int(resumed[1]) < FAULT_CONF["total_timesteps"]
    print(
        f"disk full: train try 1 failed {failed - filled:.1f} s after the disk filled, "
        f"checkpoints of steps {skipped} skipped with a warning each; room again, run done "
        f"{done - failed:.1f} s after, resumed at step {resumed[1]}; the try's error: "
        f"{error[1]}\n{_timeline(api, run_id)}"
    )


def test_an_airflow_service_that_exits_on_its_own_is_started_again(
    stack: Stack, pipeline_api: AirflowApi
) -> None:
    """As docker-compose.yaml's restart policy does: Airflow's scheduler exits when its database
    goes away (it did in the Postgres test on a loaded machine), and the devstack's keepalive
    starts it again. Killed here alone, its supervisor left alive."""
    ref = stack.processes["airflow-scheduler"]
    (scheduler,) = [proc for proc in ref.members() if proc.ppid() == ref.pid]
    killed = datetime.now(UTC)
    scheduler.kill()

    def heartbeat_after_kill() -> bool | None:
        beat = pipeline_api.get("/api/v2/monitor/health")["scheduler"]["latest_scheduler_heartbeat"]
        return (beat is not None and datetime.fromisoformat(beat) > killed) or None

    poll(heartbeat_after_kill, "a scheduler heartbeating again", timeout=120)
    (successor,) = [proc for proc in ref.members() if proc.ppid() == ref.pid]
    assert successor.pid != scheduler.pid
    log = stack.log("airflow-scheduler").read_text()
    assert "devstack keepalive: airflow-scheduler exited with code -9; restarting it" in log


def test_only_services_that_come_back_whole_can_be_restarted(tmp_path) -> None:
    """moto keeps S3 in RAM (a restart would empty it); an unknown name is refused too."""
    stack = Stack(state_dir=tmp_path, airflow_port=free_port())
    for service in ("s3", "airflow-triggerer"):
        with pytest.raises(StackError) as refused:
            stack.restart(service)
        assert str(refused.value) == (
            f"cannot restart {service!r}: one of postgres, mlflow, policy-server, "
            "airflow-apiserver, airflow-scheduler, airflow-dag-processor"
        )
