"""Does tuning pay? A real run of the rlops_sac_tune DAG, and its best config against the env's
preset on the gate's evaluation seeds, at the same step budget.

    .venv/bin/python -m benchmarks.tune_vs_preset                 # Pendulum-v1, 16 x 5,000 steps
    .venv/bin/python -m benchmarks.tune_vs_preset --trials 4 --steps 1000 --workers 2   # smoke

Run it from the repository root (`-m`: devstack is a folder of the checkout). It starts a fresh
devstack on the CeleryExecutor (`--workers`, one torch thread per trial), triggers the tuning
DAG through the REST API as the UI does (the env's default search space, whose first trial is
the preset), waits for it and for the pipeline run it starts with the best config, and prints:
the trials (score on the trial seeds 2000.., state, config), then the preset trial's and the
best trial's final policies played on the gate's seeds 1000.. (`--eval-episodes`), with the
paired difference and its 95% bootstrap interval. Both trained `--steps` steps from the same
training seed; the registered version's own gate figure is printed beside, as a check that the
pipeline retrained the best trial's policy exactly. A trial's luck with its seed is not a
config's merit: `--check-seeds` retrains both configs from other training seeds (rl_core
alone, one thread each) and plays them on the same gate seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from devstack.airflow_api import AirflowApi
from devstack.scratch import temporary_stack
from rl_core.common import cpu
from rl_core.common.artifact_names import ACTOR_ARTIFACT_DIR, ACTOR_FILE
from rl_core.common.config import build_config
from rl_core.common.search_space import preset_point
from rl_core.envs.spec import describe_env
from rl_core.evaluation.confidence import mean_interval, paired_difference
from rl_core.evaluation.episodes import actor_policy, evaluate
from rl_core.policy.checkpoint import load_actor
from rl_core.run.training import train

TUNE_DAG = "rlops_sac_tune"
EVAL_SEED_START = 1000


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')}  {message}", flush=True)


def tune_conf(env_id: str, steps: int, trials: int, eval_episodes: int) -> dict[str, object]:
    """The tuning run: the env's default space, every trial one torch thread."""
    return {
        "env_id": env_id,
        "total_timesteps": steps,
        "checkpoint_every": 0,
        "n_trials": trials,
        "eval_episodes": eval_episodes,
        "eval_seed_start": EVAL_SEED_START,
        "record_video": False,
        "sac_overrides": {"torch_threads": 1},
        "registered_model_name": f"rlops-tuned-{env_id.lower()}",
    }


def final_returns(trial: FrozenTrial, seeds: range) -> list[float]:
    """The trial's final policy, from its MLflow run, played once per seed."""
    import mlflow

    with tempfile.TemporaryDirectory() as scratch:
        path = mlflow.artifacts.download_artifacts(
            run_id=trial.user_attrs["rlops.mlflow_run_id"],
            artifact_path=f"{ACTOR_ARTIFACT_DIR}/{ACTOR_FILE}",
            dst_path=scratch,
        )
        actor, env = load_actor(Path(path))
    return evaluate(actor_policy(actor), env, seeds).returns


def retrained_returns(
    trial: FrozenTrial, env_id: str, steps: int, seed: int, seeds: range
) -> list[float]:
    """The trial's config trained again from training seed `seed`, played once per seed."""
    values = {**trial.user_attrs["rlops.sac_values"], "torch_threads": 1}
    config = build_config({"env_id": env_id, "total_timesteps": steps, "seed": seed, **values})
    agent = train(config, show_progress=False).agent
    return evaluate(agent.act, env_id, seeds).returns


def trials_table(trials: list[FrozenTrial], best: FrozenTrial, preset: FrozenTrial) -> Table:
    names = list(preset.params)
    table = Table(title="trials (score: mean return on the trial seeds)")
    for column in ("trial", "state", "score", "minutes", *names):
        table.add_column(column, justify="right")
    for t in trials:
        mark = " best" if t.number == best.number else " preset" if t is preset else ""
        ended, started = t.datetime_complete, t.datetime_start
        minutes = f"{(ended - started).total_seconds() / 60:.1f}" if ended and started else ""
        score = "" if t.value is None else f"{t.value:.1f}"
        shown = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in t.params.values()]
        table.add_row(f"{t.number}{mark}", t.state.name, score, minutes, *shown)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--steps", type=int, default=5_000, help="env steps per trial")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="Celery workers")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument(
        "--check-seeds", type=int, nargs="*", default=[1, 2, 3], help="other training seeds"
    )
    parser.add_argument("--timeout", type=float, default=3 * 3600.0, help="seconds per DAG run")
    args = parser.parse_args()
    console = Console(width=200)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    conf = tune_conf(args.env, args.steps, args.trials, args.eval_episodes)
    began = time.monotonic()
    say(f"starting a Celery stack with {args.workers} workers")
    with temporary_stack("rlops-tune-", executor="CeleryExecutor", workers=args.workers) as stack:
        os.environ.update(stack.mlflow_client_env("viewer"))  # it only reads the results
        with AirflowApi(stack) as pipeline, AirflowApi(stack, dag_id=TUNE_DAG) as tune:
            pipeline.open_for_manual_runs()
            tune.open_for_manual_runs()
            response = tune.trigger(conf)
            if response.status_code != 200:
                raise SystemExit(f"trigger refused: {response.text}")
            run_id = response.json()["dag_run_id"]
            say(f"tuning run {run_id}: {args.trials} trials of {args.steps} steps")
            tuned = tune.wait_for_run(run_id, timeout=args.timeout)
            say(f"tuning run {tuned['state']}; waiting for the pipeline run tuned__{run_id}")
            trained = pipeline.wait_for_run(f"tuned__{run_id}", timeout=args.timeout)
            say(f"pipeline run {trained['state']}")
        storage = stack.postgres_dsn("optuna", "postgresql+psycopg2")
        study = optuna.load_study(study_name=f"{TUNE_DAG}/{run_id}", storage=storage)
        trials = study.trials
        act_dim = describe_env(args.env).act_dim
        preset = next(t for t in trials if t.params == preset_point(args.env, act_dim))
        best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
        seeds = range(EVAL_SEED_START, EVAL_SEED_START + args.eval_episodes)
        preset_returns = final_returns(preset, seeds)
        best_returns = final_returns(best, seeds)
        from mlflow import MlflowClient

        (version,) = MlflowClient().search_model_versions(
            f"name = '{conf['registered_model_name']}'"
        )
    console.print(f"CPU: {cpu.model()}, {os.cpu_count()} cores; {args.workers} Celery workers")
    console.print(trials_table(trials, best, preset))
    difference = paired_difference(best_returns, preset_returns)
    console.print(
        f"on the gate's seeds {seeds.start}..{seeds.stop - 1}, {args.steps} steps each:\n"
        f"  preset (trial {preset.number}):  {mean_interval(preset_returns)}\n"
        f"  tuned  (trial {best.number}):  {mean_interval(best_returns)}\n"
        f"  tuned - preset, paired:  {difference}\n"
        f"  the pipeline's registered v{version.version} (tuned_by "
        f"{version.tags.get('rlops.tuned_by')}): gate figure {float(version.tags['reward']):.1f}"
    )
    means: dict[str, list[float]] = {"preset": [], "tuned": []}
    for seed in args.check_seeds:
        for name, trial in (("preset", preset), ("tuned", best)):
            returns = retrained_returns(trial, args.env, args.steps, seed, seeds)
            means[name].append(sum(returns) / len(returns))
        console.print(
            f"  training seed {seed}: preset {means['preset'][-1]:.1f}, "
            f"tuned {means['tuned'][-1]:.1f}"
        )
    if args.check_seeds:
        console.print(
            f"  over training seeds {args.check_seeds}: tuned - preset, paired by seed: "
            f"{paired_difference(means['tuned'], means['preset'])}"
        )
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    console.print(
        f"{len(trials)} trials, {pruned} pruned; whole run {time.monotonic() - began:.0f} s "
        f"(tuning {tuned['state']}, pipeline {trained['state']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
