"""The pipeline's Airflow tasks: thin TaskFlow wrappers around `rlops_airflow.stages`.

This module is imported when the DAG file is parsed, so it imports only Airflow; torch,
gymnasium and mlflow load inside the task bodies, on the worker. No task argument is named
after an Airflow context key except the context values it asks Airflow for (`params`,
`dag_run`, `ti`), which default to None as TaskFlow requires.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import task

from rlops_airflow import MLFLOW_RUN_URL_XCOM_KEY
from rlops_airflow.assets import CHAMPION

if TYPE_CHECKING:
    from rlops_airflow.mlflow_run import AirflowRun
    from rlops_airflow.settings import ResolvedSettings

log = logging.getLogger(__name__)

TRAIN_RETRIES = 3
"""Training resumes from its last uploaded checkpoint, so retrying it is cheap."""
TRAIN_STEPS_PER_SECOND_FLOOR = 30
"""Env-steps/s below which a `train` try counts as hung: half the slowest rate measured, 63
env-steps/s (a first pipeline run on 2 busy cores while the stack was starting, field notes J;
warm runs train at 181-287, the Intel kind at 98-151)."""
TRAIN_SETUP_ALLOWANCE = timedelta(minutes=5)
"""On top: env build, the step's compile on a cold cache (~50 s measured), MLflow uploads."""
MAX_TOTAL_TIMESTEPS = 2_000_000
"""The `total_timesteps` Param's maximum (a test keeps the two equal)."""


def train_timeout(total_timesteps: int) -> timedelta:
    """How long one `train` try of `total_timesteps` steps may take."""
    return TRAIN_SETUP_ALLOWANCE + timedelta(
        seconds=-(-total_timesteps // TRAIN_STEPS_PER_SECOND_FLOOR)
    )


def time_box_train(context: Any) -> None:
    """`pre_execute` of `train`: this run's `execution_timeout`, from its `total_timesteps`.

    Airflow reads the task's `execution_timeout` right after this hook and enforces it the
    usual way (AirflowTaskTimeout, then a retry from the checkpoint); the static value on the
    task is only the bound for the Param's maximum, should the hook not run. The run's
    settings are `validate_conf`'s (a drift-triggered run's are not its params)."""
    settings = context["ti"].xcom_pull(task_ids="validate_conf") if "ti" in context else None
    total = (settings or context["params"])["total_timesteps"]
    context["task"].execution_timeout = train_timeout(total)


def _settings(validated: dict[str, Any]) -> ResolvedSettings:
    """The run's settings as `validate_conf` resolved them (its XCom), never its raw params."""
    from rlops_airflow.settings import ResolvedSettings

    return ResolvedSettings(**validated)


def airflow_run(dag_run: Any) -> AirflowRun:
    """Who a task belongs to, with a link to the run in the Airflow UI when its URL is known."""
    from airflow.sdk.configuration import conf

    from rlops_airflow.mlflow_run import AirflowRun

    base_url = conf.get("api", "base_url", fallback=None)
    ui_url = (
        f"{base_url.rstrip('/')}/dags/{dag_run.dag_id}/runs/{dag_run.run_id}" if base_url else None
    )
    return AirflowRun(dag_run.dag_id, dag_run.run_id, ui_url)


def prepare_task() -> None:
    """MLflow ready for a task (see `prepare_mlflow`): called before a stage module is
    imported, since importing one imports mlflow."""
    from rlops_airflow.task_runtime import prepare_mlflow

    prepare_mlflow()


def publish_run_link(ti: Any, mlflow_run_id: str) -> None:
    """The task's **MLflow run** link (rlops_links reads this XCom)."""
    from rlops_airflow.mlflow_run import run_url

    url = run_url(mlflow_run_id)
    if url:
        ti.xcom_push(key=MLFLOW_RUN_URL_XCOM_KEY, value=url)


@task(retries=0)
def validate_conf(
    params: dict | None = None, dag_run: Any = None, triggering_asset_events: Any = None
) -> dict[str, Any]:
    """The run's whole conf, validated before anything runs; a bad one fails the run at once.
    Every later task takes the settings it returns, the SAC recipe resolved here included
    (`ResolvedSettings`): the presets of this moment, whatever they are when a task runs.

    A run a `champion-degraded` asset event started has no conf: its settings are the
    rolled-back version's recipe (`rlops_airflow.retrain`), unless another drift-triggered
    run of that model started within the cooldown: then it skips, and so does every task.
    Not retried: a bad conf stays bad. The failure names every bad field, with the closest
    known name for a typo'd key.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from rlops_airflow.settings import ConfError
    from rlops_airflow.settings import validate_conf as validated

    conf = dict(params or {})
    degraded = _degraded_events(triggering_asset_events)
    if degraded:
        conf |= _drift_retrain_conf(degraded, conf, dag_run)
    try:
        return validated(conf).resolve().model_dump(mode="json", exclude_unset=True)
    except ConfError as exc:
        raise AirflowFailException(str(exc)) from None


def _degraded_events(triggering_asset_events: Any) -> list[Any]:
    """The `champion-degraded` events that started this run (none: not drift-triggered)."""
    from rlops_airflow.assets import CHAMPION_DEGRADED

    if not triggering_asset_events:
        return []
    return sorted(triggering_asset_events.get(CHAMPION_DEGRADED, []), key=lambda e: e.timestamp)


def _drift_retrain_conf(events: list[Any], params: dict[str, Any], dag_run: Any) -> dict:
    """The conf of a drift-triggered run, from its newest event; skips within the cooldown."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from rlops_airflow import retrain

    try:
        drift = retrain.Degradation.from_extra(events[-1].extra)
    except retrain.RetrainError as exc:
        raise AirflowFailException(str(exc)) from None
    for older in events[:-1]:  # one run retrains one model: the newest event's
        log.warning("not retrained by this run (one model per run): %s", older.extra)
    log.info("started by the rollback of %s: %s", drift.lineage, drift.reason)
    prepare_task()  # retrain_conf reads the rolled-back version's run
    try:
        conf = retrain.retrain_conf(drift)
    except (retrain.RetrainError, ValueError) as exc:
        raise AirflowFailException(f"cannot retrain {drift.lineage}: {exc}") from None
    refusal = retrain.claim_retrain(
        drift.model_name,
        airflow_run(dag_run).key,
        dag_run.run_after,
        timedelta(hours=params["drift_retrain_cooldown_hours"]),
    )
    if refusal:
        raise AirflowSkipException(refusal)
    log.info("retraining %s with its logged recipe: %s", drift.lineage, conf)
    return conf


@task(retries=0)
def validate_env(settings: dict[str, Any]) -> dict[str, Any]:
    """Build the run's env once; one that cannot be built, or that SAC cannot act in, or
    that is not the env of the run's registered model, fails the run at once, naming the env
    and what is wrong. Passes the settings on.

    Not retried: a missing package or a wrong id stays wrong.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from rl_core.envs.spec import EnvError, describe_env

    run_settings = _settings(settings)
    prepare_task()
    from rlops_airflow.stages.register import ModelEnvMismatch, check_model_env

    try:
        summary = describe_env(run_settings.sac_config().env)
        check_model_env(run_settings)
    except (EnvError, ModelEnvMismatch) as exc:
        raise AirflowFailException(str(exc)) from None
    log.info(
        "env %s: %d observations, %d actions in [%s, %s], episodes of %s steps",
        summary.env,
        summary.obs_dim,
        summary.act_dim,
        summary.action_low,
        summary.action_high,
        summary.max_episode_steps or "unbounded",
    )
    return settings


@task
def sweep_seeds(settings: dict[str, Any]) -> list[int]:
    """The training seeds: `seed` .. `seed + n_seeds - 1`, one mapped `train` each."""
    return _settings(settings).sweep_seeds


@task(
    retries=TRAIN_RETRIES,
    retry_delay=timedelta(seconds=30),
    execution_timeout=train_timeout(MAX_TOTAL_TIMESTEPS),
    pre_execute=time_box_train,
)
def train(
    seed: int, settings: dict[str, Any], dag_run: Any = None, ti: Any = None
) -> dict[str, Any]:
    """Train SAC with `seed` (resuming from the last checkpoint on retry)."""
    prepare_task()
    from rlops_airflow.stages.train import train_candidate

    run_settings = _settings(settings)
    result = train_candidate(run_settings, airflow_run(dag_run), seed)
    if run_settings.drift_retrain_of:
        from mlflow import MlflowClient

        from rlops_registry import tags

        MlflowClient().set_tag(
            result["mlflow_run_id"], tags.DRIFT_RETRAIN_OF, run_settings.drift_retrain_of
        )
    publish_run_link(ti, result["mlflow_run_id"])
    return result


@task
def evaluate(trained: dict[str, Any], settings: dict[str, Any], ti: Any = None) -> dict:
    """Quality gate: mean deterministic return on the fixed eval seeds."""
    prepare_task()
    from rlops_airflow.stages.evaluate import evaluate_candidate

    publish_run_link(ti, trained["mlflow_run_id"])
    return {**trained, **evaluate_candidate(_settings(settings), trained["mlflow_run_id"])}


@task
def select_candidate(evaluations: list[dict[str, Any]], ti: Any = None) -> dict[str, Any]:
    """The sweep's best candidate goes on; the others stay as MLflow runs."""
    prepare_task()
    from rlops_airflow.stages.evaluate import select_candidate as select_best

    winner = select_best(evaluations[:])  # one read; iterating probes past the end
    publish_run_link(ti, winner["mlflow_run_id"])
    return winner


@task
def export_torchscript(candidate: dict[str, Any], ti: Any = None) -> dict[str, Any]:
    """The policy as an MLflow model (pyfunc around the TorchScript actor, checked against
    the eager one); returns its `models:/` URI."""
    prepare_task()
    from rlops_airflow.stages.export import export_candidate

    publish_run_link(ti, candidate["mlflow_run_id"])
    return export_candidate(candidate["mlflow_run_id"], candidate["actor_artifact"])


@task
def benchmark_latency(
    candidate: dict[str, Any], exported: dict[str, Any], ti: Any = None
) -> dict[str, Any]:
    """Eager vs TorchScript latency at batch 1/8/32/128; speedup as metrics."""
    prepare_task()
    from rlops_airflow.stages.export import benchmark_candidate

    publish_run_link(ti, candidate["mlflow_run_id"])
    return benchmark_candidate(candidate["mlflow_run_id"], candidate["actor_artifact"], exported)


@task
def register(
    candidate: dict[str, Any],
    exported: dict[str, Any],
    latency: dict[str, Any],
    settings: dict[str, Any],
    dag_run: Any = None,
    ti: Any = None,
) -> dict[str, Any]:
    """A model version in the MLflow registry, tagged with the gate results."""
    prepare_task()
    from rlops_airflow.stages.register import register_candidate

    publish_run_link(ti, candidate["mlflow_run_id"])
    airflow = airflow_run(dag_run)
    run_settings = _settings(settings)
    registered = register_candidate(run_settings, airflow, candidate, exported, latency)
    if run_settings.drift_retrain_of:
        from rlops_registry import tags
        from rlops_registry.registry import ModelRegistry

        ModelRegistry(registered["model_name"]).set_tags(
            registered["version"], {tags.DRIFT_RETRAIN_OF: run_settings.drift_retrain_of}
        )
    return registered


def promote(
    candidate: dict[str, Any],
    latency: dict[str, Any],
    registered: dict[str, Any],
    settings: dict[str, Any],
    ti: Any,
) -> dict:
    """PythonOperator callable: champion only if the gate passes on the figures upstream
    measured; else tagged rejected."""
    prepare_task()
    from rlops_airflow.stages.promote import promote_candidate

    publish_run_link(ti, candidate["mlflow_run_id"])
    return {
        **promote_candidate(_settings(settings), candidate, latency, registered),
        "model_name": registered["model_name"],
    }


@task(outlets=[CHAMPION])
def announce_champion(promoted: dict[str, Any], outlet_events: Any = None) -> None:
    """A `champion` asset event (extra: model and version) when `promote` crowned; skipped,
    so no event, when it rejected. Separate from `promote` because a task emits an event for
    each of its outlets whenever it succeeds, and a rejection is a success."""
    from airflow.sdk.exceptions import AirflowSkipException

    from rlops_airflow import assets

    if promoted["outcome"] != "promoted":
        raise AirflowSkipException(f"v{promoted['version']} {promoted['outcome']}: no new champion")
    outlet_events[CHAMPION].extra = {
        assets.MODEL_NAME: promoted["model_name"],
        assets.VERSION: promoted["version"],
    }
