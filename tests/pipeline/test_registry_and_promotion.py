"""Gate and promotion against a real MLflow registry (SQLite): what moves, what never does."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml
from mlflow import MlflowClient

from rl_core.common.artifact_names import CONFIG_ARTIFACT
from rl_core.evaluation.episodes import EVALUATION_ARTIFACT, EvalResult, actor_policy, evaluate
from rl_core.policy.checkpoint import load_actor, save_actor
from rl_core.policy.policy_model import log_policy_model
from rl_core.sac.networks import Actor
from rlops_airflow.mlflow_run import AirflowRun, download, get_or_create_candidate_run
from rlops_airflow.settings import PipelineSettings
from rlops_airflow.stages.evaluate import evaluate_candidate, select_candidate
from rlops_airflow.stages.export import export_candidate
from rlops_airflow.stages.promote import promote_candidate
from rlops_airflow.stages.register import ModelEnvMismatch, check_model_env, register_candidate
from rlops_airflow.stages.train import train_candidate
from rlops_registry.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ModelRegistry,
    NoPreviousChampion,
)
from tests.pipeline.conftest import TINY_SAC
from tests.serving.policies import register_broken_version

DAG = "rlops_sac_pipeline"


def _untrained_policy(run_id: str) -> dict:
    """What `export_torchscript` hands on: a real policy model of the run (untrained weights)."""
    torch.manual_seed(0)
    actor = Actor(3, 1, (16, 16), torch.tensor([-2.0]), torch.tensor([2.0]))
    logged = log_policy_model(actor, "Pendulum-v1", run_id)
    return {"model_uri": logged.model_uri, "model_id": logged.model_id}


def _registered(
    settings: PipelineSettings,
    n: int,
    reward: float,
    speedup: float,
    returns: list[float] | None = None,
) -> dict:
    """What the upstream tasks of DAG run `n` hand to register (their outputs, as XCom), and
    the per-episode evaluation its run records (`returns`; default: `reward` on every seed)."""
    airflow = AirflowRun(DAG, f"manual__{n}")
    run_id = get_or_create_candidate_run(airflow, seed=0, run_name=f"candidate {n}")
    seeds = list(settings.eval_seeds)
    returns = returns or [reward] * len(seeds)
    result = EvalResult(float(np.mean(returns)), float(np.std(returns)), returns, seeds)
    MlflowClient().log_dict(run_id, result.as_dict(), EVALUATION_ARTIFACT)
    recipe = yaml.safe_dump(settings.sac_config(0).resolved())
    MlflowClient().log_text(run_id, recipe, CONFIG_ARTIFACT)  # what `train` logs
    candidate = {"mlflow_run_id": run_id, "seed": 0, "mean_return": result.mean, "returns": returns}
    exported = _untrained_policy(run_id)
    latency = {"speedup": speedup}
    registered = register_candidate(settings, airflow, candidate, exported, latency)
    return {"run_id": run_id, "candidate": candidate, "latency": latency, **registered}


def _promote(settings: PipelineSettings, registered: dict) -> dict:
    """promote, given what its upstream tasks handed on."""
    return promote_candidate(settings, registered["candidate"], registered["latency"], registered)


def _alias(settings: PipelineSettings, alias: str) -> str | None:
    version = ModelRegistry(settings.registered_model_name).alias(alias)
    return None if version is None else str(version.version)


def _tags(settings: PipelineSettings, version: str) -> dict[str, str]:
    return ModelRegistry(settings.registered_model_name).version(version).tags


def test_passing_candidate_becomes_champion(pipeline_store, tiny_settings) -> None:
    candidate = _registered(tiny_settings, 1, reward=-180.0, speedup=2.2)
    assert _alias(tiny_settings, CHALLENGER) == candidate["version"]
    result = _promote(tiny_settings, candidate)
    assert result == {"outcome": "promoted", "version": "1", "champion_version": "1"}
    assert _alias(tiny_settings, CHAMPION) == "1"
    tags = _tags(tiny_settings, "1")
    assert tags["rlops.promotion"] == "promoted"
    assert (tags["gate.reward"], tags["gate.speedup"]) == ("passed", "passed")
    assert tags["airflow.dag_id"] == DAG
    assert tags["airflow.run_id"] == "manual__1"
    assert tags["git_sha"]
    assert float(tags["reward"]) == -180.0
    run = MlflowClient().get_run(candidate["run_id"])
    assert run.data.tags["rlops.outcome"] == "promoted"


@pytest.mark.parametrize(
    ("reward", "speedup", "reason"),
    [
        (
            -412.0,
            2.0,
            "reward -412.0 [-412.0, -412.0] (95% CI) < -250; return vs champion v1 (-170.0): "
            "mean paired difference -242.0 [-242.0, -242.0] (95% CI), low end below 0.0 "
            "(margin 0 of its magnitude)",
        ),
        (-150.0, 1.1, "speedup x1.10 < x1.5"),
        (
            -190.0,
            2.0,
            "return vs champion v1 (-170.0): mean paired difference -20.0 [-20.0, -20.0] "
            "(95% CI), low end below 0.0 (margin 0 of its magnitude)",
        ),
    ],
)
def test_rejected_candidate_leaves_champion_untouched(
    pipeline_store, tiny_settings, reward, speedup, reason
) -> None:
    _promote(tiny_settings, _registered(tiny_settings, 1, reward=-170.0, speedup=2.0))
    candidate = _registered(tiny_settings, 2, reward=reward, speedup=speedup)
    result = _promote(tiny_settings, candidate)
    assert result["outcome"] == f"rejected: {reason}"
    assert result["champion_version"] == "1"
    assert _alias(tiny_settings, CHAMPION) == "1"
    assert _alias(tiny_settings, PREVIOUS_CHAMPION) is None
    assert _alias(tiny_settings, CHALLENGER) == "2"  # the candidate is always the challenger
    tags = _tags(tiny_settings, "2")
    assert tags["rlops.promotion"] == "rejected"
    assert tags["rlops.rejection_reasons"] == reason
    outcome = MlflowClient().get_run(candidate["run_id"]).data.tags["rlops.outcome"]
    assert outcome == f"rejected: {reason}"


def test_a_reward_a_hair_below_the_gate_fails_it_in_every_task(
    pipeline_store, tiny_settings
) -> None:
    """Rounded to the tags' 4 decimals, -250.00001 would reach the gate; no task rounds."""
    candidate = _registered(tiny_settings, 1, reward=-250.00001, speedup=2.0)
    assert _tags(tiny_settings, "1")["gate.reward"] == "failed"
    outcome = _promote(tiny_settings, candidate)["outcome"]
    assert outcome == "rejected: reward -250.0 [-250.0, -250.0] (95% CI) < -250"
    assert _alias(tiny_settings, CHAMPION) is None


def test_the_champion_is_compared_by_its_exact_episodes(pipeline_store, tiny_settings) -> None:
    """Its own recorded evaluation, not the 4-decimal tags: with no margin, 1e-5 worse loses."""
    strict = tiny_settings.model_copy(update={"noninferiority_margin": 0.0})
    _promote(strict, _registered(strict, 1, reward=-170.00001, speedup=2.0))
    assert _tags(strict, "1")["eval_returns"] == json.dumps([-170.0, -170.0])  # rounded
    result = _promote(strict, _registered(strict, 2, -170.00002, 2.0))
    assert result["outcome"].startswith("rejected: return vs champion v1 (-170.0)")
    assert _alias(strict, CHAMPION) == "1"


def test_only_a_better_retrain_replaces_the_champion(pipeline_store, tiny_settings) -> None:
    """Episode by episode on the same seeds: hard starts are hard for both policies. By
    default an equal retrain is no reason to move `champion`; a margin lets it."""
    tiny_settings = tiny_settings.model_copy(update={"eval_episodes": 10})
    rng = np.random.default_rng(0)
    champion = list(rng.normal(-170.0, 60.0, 10))
    _promote(tiny_settings, _registered(tiny_settings, 1, 0.0, 2.0, returns=champion))
    equal = [r + noise for r, noise in zip(champion, rng.normal(0.0, 3.0, 10), strict=True)]
    outcome = _promote(tiny_settings, _registered(tiny_settings, 2, 0.0, 2.0, returns=equal))
    assert outcome["outcome"].startswith("rejected: return vs champion v1")
    better = [r + 10.0 for r in equal]
    outcome = _promote(tiny_settings, _registered(tiny_settings, 3, 0.0, 2.0, returns=better))
    assert outcome["outcome"] == "promoted"
    lenient = tiny_settings.model_copy(update={"noninferiority_margin": 0.05})
    also_equal = [r + noise for r, noise in zip(better, rng.normal(0.0, 3.0, 10), strict=True)]
    outcome = _promote(lenient, _registered(lenient, 4, 0.0, 2.0, returns=also_equal))
    assert outcome["outcome"] == "promoted"
    assert _alias(tiny_settings, CHAMPION) == "4"


def test_champion_comparison_can_be_switched_off(pipeline_store, tiny_settings) -> None:
    lenient = tiny_settings.model_copy(update={"compare_with_champion": False})
    _promote(lenient, _registered(lenient, 1, reward=-170.0, speedup=2.0))
    assert _promote(lenient, _registered(lenient, 2, -190.0, 2.0))["outcome"] == "promoted"
    assert (_alias(lenient, CHAMPION), _alias(lenient, PREVIOUS_CHAMPION)) == ("2", "1")


def test_retried_tasks_create_no_duplicates(pipeline_store, tiny_settings) -> None:
    airflow = AirflowRun(DAG, "manual__retry")
    first = get_or_create_candidate_run(airflow, 0, "a")
    assert get_or_create_candidate_run(airflow, 0, "b") == first
    assert get_or_create_candidate_run(airflow, 1, "c") != first  # another sweep seed
    client = MlflowClient()
    experiment = client.get_experiment_by_name("rlops-test")
    assert len(client.search_runs([experiment.experiment_id])) == 2

    _promote(tiny_settings, _registered(tiny_settings, 1, -170.0, 2.0))
    candidate = _registered(tiny_settings, 2, -160.0, 2.0)
    again = _registered(tiny_settings, 2, -160.0, 2.0)  # register retried
    assert again["version"] == candidate["version"] == "2"
    assert len(client.search_model_versions("name = 'rlops-test-model'")) == 2

    for _ in range(2):  # promote retried: harmless
        assert _promote(tiny_settings, candidate)["outcome"] == "promoted"
        assert (_alias(tiny_settings, CHAMPION), _alias(tiny_settings, PREVIOUS_CHAMPION)) == (
            "2",
            "1",
        )


def test_rollback_is_one_call_and_walks_back(pipeline_store, tiny_settings) -> None:
    for n, reward in ((1, -200.0), (2, -190.0), (3, -180.0)):
        _promote(tiny_settings, _registered(tiny_settings, n, reward, 2.0))
    registry = ModelRegistry(tiny_settings.registered_model_name)
    assert registry.rollback().version == 2
    assert (_alias(tiny_settings, CHAMPION), _alias(tiny_settings, PREVIOUS_CHAMPION)) == (
        "2",
        "1",
    )
    assert registry.rollback().version == 1
    assert _alias(tiny_settings, CHAMPION) == "1"
    assert _alias(tiny_settings, PREVIOUS_CHAMPION) is None
    with pytest.raises(NoPreviousChampion):
        registry.rollback()
    assert _alias(tiny_settings, CHAMPION) == "1"


@pytest.mark.parametrize(
    ("other", "described"),
    [
        ({"env_id": "MountainCarContinuous-v0"}, "this run trains MountainCarContinuous-v0"),
        ({"env_kwargs": {"g": 5.0}}, 'this run trains Pendulum-v1 (kwargs {"g": 5.0})'),
    ],
)
def test_a_model_holds_one_env(pipeline_store, tiny_settings, other, described) -> None:
    """A run on another env (id or kwargs) under the same model name is refused, before it
    trains and again before it registers; the model's versions and aliases stay as they were."""
    _promote(tiny_settings, _registered(tiny_settings, 1, -180.0, 2.0))
    check_model_env(tiny_settings)  # the model's own env passes
    elsewhere = tiny_settings.model_copy(update=other)
    message = (
        "registered model 'rlops-test-model' holds policies of Pendulum-v1 (latest v1); "
        f"{described}: set registered_model_name to a model of its own"
    )
    with pytest.raises(ModelEnvMismatch) as refused:
        check_model_env(elsewhere)
    assert str(refused.value) == message
    with pytest.raises(ModelEnvMismatch):
        _registered(elsewhere, 2, -10.0, 2.0)
    assert [
        v.version for v in MlflowClient().search_model_versions("name = 'rlops-test-model'")
    ] == [1]
    assert (_alias(tiny_settings, CHAMPION), _alias(tiny_settings, CHALLENGER)) == ("1", "1")
    own_model = elsewhere.model_copy(update={"registered_model_name": "rlops-test-other"})
    check_model_env(own_model)  # under a name of its own it may go ahead


def test_a_model_of_other_tooling_is_refused_for_its_unknown_env(
    pipeline_store, tiny_settings, tmp_path
) -> None:
    version = register_broken_version(tiny_settings.model_name, tmp_path)  # no env_id tag
    with pytest.raises(ModelEnvMismatch) as refused:
        check_model_env(tiny_settings)
    assert str(refused.value) == (
        f"registered model 'rlops-test-model' (latest v{version}) records no env (version tag "
        "'env_id'): it was not registered by rlops, so its policies cannot be compared with this "
        "run's; set registered_model_name to a model of its own"
    )


def test_champion_is_reevaluated_on_the_candidates_seeds(pipeline_store, tiny_settings) -> None:
    """A champion evaluated on other seeds is scored again on this run's seeds."""
    airflow = AirflowRun(DAG, "manual__real")
    run_id = train_candidate(tiny_settings, airflow, seed=0)["mlflow_run_id"]
    exported = export_candidate(run_id, "actor/actor.pt")
    assert export_candidate(run_id, "actor/actor.pt") == exported  # a retry reuses the model
    trained = {"mlflow_run_id": run_id, "seed": 0, "mean_return": -100.0, "returns": [-100.0] * 2}
    latency = {"speedup": 3.0}
    champion = register_candidate(tiny_settings, airflow, trained, exported, latency)
    promote_candidate(tiny_settings, trained, latency, champion)

    other_seeds = tiny_settings.model_copy(update={"eval_seed_start": 5000})
    # Better than the champion's tag (-100 on seeds 1000..) but the champion, re-scored on
    # seeds 5000.., is a 1000-step policy: far below -100, so the candidate must win.
    candidate = _registered(other_seeds, 9, reward=-99.0, speedup=2.0)
    assert _promote(other_seeds, candidate)["outcome"] == "promoted"
    # And one that is worse than the re-scored champion loses against it.
    candidate = _registered(other_seeds, 10, reward=-5000.0, speedup=2.0)
    outcome = _promote(other_seeds, candidate)["outcome"]
    assert outcome.startswith(
        "rejected: reward -5000.0 [-5000.0, -5000.0] (95% CI) < -250; return vs champion v"
    )


def test_sweep_selects_the_best_candidate_and_keeps_the_others(pipeline_store) -> None:
    airflow = AirflowRun(DAG, "manual__sweep")
    evaluations = [
        {
            "mlflow_run_id": get_or_create_candidate_run(airflow, seed, f"seed {seed}"),
            "seed": seed,
            "mean_return": mean,
            "std_return": 5.0,
        }
        for seed, mean in ((0, -300.0), (1, -160.0), (2, -160.0))
    ]
    winner = select_candidate(evaluations)
    assert winner["seed"] == 1  # best return; the tie with seed 2 goes to the first seed
    client = MlflowClient()
    ranks = {e["seed"]: client.get_run(e["mlflow_run_id"]).data.tags for e in evaluations}
    assert [ranks[s]["rlops.sweep.rank"] for s in (1, 2, 0)] == ["1", "2", "3"]
    assert {t["rlops.sweep.winner"] for t in ranks.values()} == {winner["mlflow_run_id"]}
    assert ranks[1]["rlops.selected"] == "true"
    assert "rlops.selected" not in ranks[0]
    table = client.list_artifacts(winner["mlflow_run_id"], "sweep")
    assert {a.path for a in table} == {"sweep/comparison.json", "sweep/comparison.md"}


@pytest.mark.parametrize(
    ("use_best", "artifact", "record_video"),
    [(True, "best_actor.pt", True), (False, "actor.pt", False)],
)
def test_use_best_chooses_the_policy_the_gate_and_export_see(
    pipeline_store, tiny_settings, tmp_path, use_best: bool, artifact: str, record_video: bool
) -> None:
    settings = PipelineSettings(
        **{
            **tiny_settings.model_dump(exclude_unset=True),
            "use_best": use_best,
            "record_video": record_video,
            "sac_overrides": {**TINY_SAC, "eval_every": 400},
        }
    )
    airflow = AirflowRun(DAG, f"manual__best_{use_best}")
    run_id = train_candidate(settings, airflow, seed=0)["mlflow_run_id"]
    evaluated = evaluate_candidate(settings, run_id)
    assert evaluated["actor_artifact"] == f"actor/{artifact}"
    actor, env = load_actor(download(run_id, f"actor/{artifact}", tmp_path))
    expected = evaluate(actor_policy(actor), env, settings.eval_seeds).mean
    assert evaluated["mean_return"] == expected
    history = MlflowClient().get_metric_history(run_id, "progress_eval_mean_return")
    assert [m.step for m in history] == [400, 800]  # Pendulum episodes end every 200 steps
    # The same candidate's episode on the first eval seed, as a GIF on its run (or not at all).
    videos = [a.path for a in MlflowClient().list_artifacts(run_id, "video")]
    video_tag = MlflowClient().get_run(run_id).data.tags["rlops.video"]
    if record_video:
        assert (videos, video_tag) == (["video/episode.gif"], "video/episode.gif")
        frames = iio.imread(download(run_id, "video/episode.gif", tmp_path), index=None)
        # Pendulum's 200 steps, every 2nd drawn at 256 px (a still stretch merges frames)
        assert frames.shape[1:] == (256, 256, 3) and 1 < len(frames) <= 100
    else:
        assert (videos, video_tag) == ([], "none: record_video is off")


def test_an_env_that_cannot_render_costs_the_video_not_the_gate(
    pipeline_store, tiny_settings, tmp_path, env_without_rendering: str
) -> None:
    run_id = get_or_create_candidate_run(AirflowRun(DAG, "manual__blind"), 0, "blind")
    torch.manual_seed(0)
    actor = Actor(3, 1, (16, 16), torch.tensor([-1.0]), torch.tensor([1.0]))
    MlflowClient().log_artifact(
        run_id, str(save_actor(tmp_path / "actor.pt", actor, env_without_rendering)), "actor"
    )
    for _ in range(2):  # a retried evaluate: same verdict, same tag
        evaluate_candidate(tiny_settings, run_id)
        tags = MlflowClient().get_run(run_id).data.tags
        assert tags["rlops.gate.reward"] == "passed"  # five steps of at most -1 each
        assert tags["rlops.video"] == (
            "none: env 'Blind-v0' cannot render rgb_array frames: its render modes are []"
        )
    assert MlflowClient().list_artifacts(run_id, "video") == []
