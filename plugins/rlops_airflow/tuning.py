"""The tuning DAG's steps: an Optuna study on the shared Postgres, one trial per mapped task.

The study lives in its own database (`RLOPS_OPTUNA_STORAGE`, e.g.
`postgresql+psycopg2://optuna:...@postgres/optuna`), so trials on any worker share it, as
RL-Zoo's `--storage` does. `open_study` books one *slot* per mapped task: a waiting trial
tagged with the task's key (`<dag_id>/<run_id>/trial=<map_index>`), the preset's values
fixed on the first when asked. Each `trial` task claims its own slot, draws the rest of its
config then (so the TPE sampler learns from every trial finished by that time; `constant_liar`
keeps parallel trials apart), trains with the pruner listening to its evaluations, and tells
the score. A retry finds the same slot: it reuses the trial, its parameters, and its MLflow
run and checkpoint, so a map index never makes a second trial, nor a finished one train again.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from rl_core.common.artifact_names import ACTOR_ARTIFACT_DIR, ACTOR_FILE
from rl_core.common.config import build_config
from rl_core.common.search_space import preset_point, sac_overrides
from rl_core.envs.spec import describe_env
from rl_core.evaluation.episodes import actor_policy, evaluate
from rl_core.policy.checkpoint import load_actor
from rlops_airflow.mlflow_run import AirflowRun, download, get_or_create_keyed_run
from rlops_airflow.stages.train import train_in_run
from rlops_airflow.tuning_settings import TuneSettings
from rlops_registry import tags

log = logging.getLogger(__name__)

STORAGE_ENV = "RLOPS_OPTUNA_STORAGE"
SLOT = "rlops.slot"
"""User attribute of a trial: the Airflow key of the mapped task it belongs to."""
SAC_VALUES = "rlops.sac_values"
"""User attribute of a trial: its config as SACConfig values (what the pipeline is given)."""
MLFLOW_RUN = "rlops.mlflow_run_id"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class TuningError(RuntimeError):
    """A study that cannot go on (no storage, no finished trial); the message says why."""


def storage_url() -> str:
    """The Optuna storage all workers share; a clear error naming the variable when unset."""
    url = os.environ.get(STORAGE_ENV, "")
    if not url:
        raise TuningError(
            f"{STORAGE_ENV} is not set: the tuning DAG keeps its Optuna study in a database "
            "every worker reaches, e.g. postgresql+psycopg2://optuna:<password>@<host>/optuna "
            "(devstack and docker-compose set it)"
        )
    return url


def study_name(settings: TuneSettings, airflow: AirflowRun) -> str:
    """The asked study name, else one study per DAG run."""
    return settings.study_name or airflow.key


def _study(settings: TuneSettings, airflow: AirflowRun, sampler_seed: int) -> optuna.Study:
    """The study (created on first use), with a TPE sampler seeded for this trial and the
    pruner the settings ask for. Samplers and pruners are not stored: each process builds its
    own, so the seed differs per trial, or every trial would draw the same random start."""
    sampler = optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if settings.pruning:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruning_startup_trials,
            n_warmup_steps=settings.total_timesteps // 3,
        )
    return optuna.create_study(
        study_name=study_name(settings, airflow),
        storage=storage_url(),
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def _slots(study: optuna.Study, airflow: AirflowRun) -> dict[str, FrozenTrial]:
    """This DAG run's trials by slot key."""
    prefix = f"{airflow.key}/trial="
    return {
        trial.user_attrs[SLOT]: trial
        for trial in study.get_trials(deepcopy=False)
        if str(trial.user_attrs.get(SLOT, "")).startswith(prefix)
    }


def open_study(settings: TuneSettings, airflow: AirflowRun) -> dict[str, Any]:
    """Create (or continue) the study and book one slot per trial; a retry books only the
    missing ones. The map indexes to expand the `trial` task over."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(settings, airflow, settings.seed)
    booked = _slots(study, airflow)
    act_dim = describe_env(settings.sac_config().env).act_dim
    preset = preset_point(settings.env_id, act_dim)
    baseline = settings.preset_trial and settings.space().contains(preset)
    for index in range(settings.n_trials):
        key = airflow.trial_key(index)
        if key in booked:
            continue
        fixed = preset if baseline and index == 0 else {}
        study.enqueue_trial(fixed, user_attrs={SLOT: key})
    log.info(
        "study %s: %d trial slots for this run%s",
        study.study_name,
        settings.n_trials,
        "; the first runs the preset" if baseline else "",
    )
    return {"study_name": study.study_name, "map_indexes": list(range(settings.n_trials))}


def _set_state(study: optuna.Study, number: int, state: TrialState) -> int:
    """Move trial `number` to `state` (Optuna's `tell` only finishes running trials); its
    trial id. `TuningError` if another process moved it first."""
    storage = study._storage  # the study's own connection; Optuna has no public accessor
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    if storage.get_trial(trial_id).state != state and not storage.set_trial_state_values(
        trial_id, state
    ):
        raise TuningError(f"trial {number} was claimed by another process")
    return trial_id


def _claimed(study: optuna.Study, slot: FrozenTrial) -> optuna.Trial:
    """The live trial of a booked slot: a waiting one is moved to running, a running one
    (an earlier attempt's) is taken over."""
    return optuna.Trial(study, _set_state(study, slot.number, TrialState.RUNNING))


def run_trial(settings: TuneSettings, airflow: AirflowRun, map_index: int) -> dict[str, Any]:
    """Train and score the trial booked for `map_index`; a finished one is only reported."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    key = airflow.trial_key(map_index)
    study = _study(settings, airflow, settings.seed + map_index)
    slot = _slots(study, airflow).get(key)
    if slot is None:
        raise TuningError(f"no trial booked for {key}: open_study did not run for this run")
    if slot.state in FINISHED:
        log.info("trial %d already %s; not running it again", slot.number, slot.state.name)
        return _summary(slot)
    trial = _claimed(study, slot)
    act_dim = describe_env(settings.sac_config().env).act_dim
    values = sac_overrides(settings.space().suggest(trial), act_dim)
    trial.set_user_attr(SAC_VALUES, values)
    config = build_config(
        {
            **settings.sac_config().resolved(),
            **values,
            "eval_every": max(1, settings.total_timesteps // settings.evaluations_per_trial),
            "progress_eval_seeds": settings.trial_seeds,
        }
    )
    run_id = get_or_create_keyed_run(airflow, key, f"{settings.env_id} trial {trial.number}")
    trial.set_user_attr(MLFLOW_RUN, run_id)
    client = MlflowClient()
    client.set_tag(run_id, tags.TUNING_STUDY, study.study_name)
    client.set_tag(run_id, tags.TUNING_TRIAL, str(trial.number))
    log.info("trial %d: %s", trial.number, values)

    def report(step: int, mean_return: float) -> None:
        trial.report(mean_return, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"return {mean_return:.1f} at step {step}")

    try:
        train_in_run(config, run_id, on_evaluation=report)
    except optuna.TrialPruned as pruned:
        log.info("trial %d pruned: %s is below the median of earlier trials", trial.number, pruned)
        client.set_terminated(run_id, "KILLED")
        return _summary(study.tell(trial, state=TrialState.PRUNED))
    score = _score(run_id, settings)
    client.set_terminated(run_id, "FINISHED")
    if not math.isfinite(score):
        log.warning("trial %d: score %s is not a number; the trial fails", trial.number, score)
        return _summary(study.tell(trial, state=TrialState.FAIL))
    log.info("trial %d: mean return %.1f on seeds %s", trial.number, score, settings.trial_seeds)
    return _summary(study.tell(trial, score))


def _score(run_id: str, settings: TuneSettings) -> float:
    """Mean deterministic return of the trial's final policy on the trial seeds, as the
    artifact store holds it (a retry after training scores the same policy)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = download(run_id, f"{ACTOR_ARTIFACT_DIR}/{ACTOR_FILE}", Path(scratch))
        actor, env = load_actor(path)
    return evaluate(actor_policy(actor), env, settings.trial_seeds).mean


def _summary(trial: FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "mlflow_run_id": trial.user_attrs.get(MLFLOW_RUN),
    }


def best_trial(settings: TuneSettings, airflow: AirflowRun) -> dict[str, Any]:
    """The best finished trial of this run, and the conf that trains its config through the
    pipeline. Slots still open (their task failed for good) are marked failed first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(settings, airflow, settings.seed)
    slots = sorted(_slots(study, airflow).values(), key=lambda t: t.number)
    for slot in slots:
        if slot.state not in FINISHED:  # waiting (never claimed) or running (task gave up)
            log.warning("trial %d never finished; marking it failed", slot.number)
            _set_state(study, slot.number, TrialState.FAIL)
    complete = [t for t in slots if t.state == TrialState.COMPLETE]
    if not complete:
        states = ", ".join(f"#{t.number} {t.state.name}" for t in slots)
        raise TuningError(f"no trial of study {study.study_name} completed ({states})")
    best = max(complete, key=lambda t: (t.value, -t.number))
    log.info("trials of this run:\n%s", _table(slots, best))
    tuned_by = f"{study.study_name}#{best.number}"
    return {
        "study_name": study.study_name,
        "number": best.number,
        "value": best.value,
        "params": best.params,
        "conf": settings.pipeline_conf(best.user_attrs[SAC_VALUES], tuned_by),
    }


def _table(trials: list[FrozenTrial], best: FrozenTrial) -> str:
    """The run's trials as a Markdown table, the best marked."""
    names = sorted({name for t in trials for name in t.params})
    lines = [
        "| trial | state | score | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for t in trials:
        score = "" if t.value is None else f"{t.value:.1f}"
        mark = " (best)" if t.number == best.number else ""
        params = " | ".join(_shown(t.params.get(name)) for name in names)
        lines.append(f"| {t.number}{mark} | {t.state.name} | {score} | {params} |")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
