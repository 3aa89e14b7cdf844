import subprocess
import sys

import pytest

from rl_core.common.config import SACConfig
from rl_core.common.tracking import MlflowTracker, NullTracker, make_tracker
from rl_core.run.training import train

TINY = SACConfig(
    total_timesteps=600, hidden_sizes=(32, 32), batch_size=32, learning_starts=50, log_every=200
)


def test_tracker_is_noop_without_uri_and_never_imports_mlflow() -> None:
    # A fresh interpreter: this test process may already have imported mlflow elsewhere.
    code = (
        "import os, sys\n"
        "os.environ.pop('MLFLOW_TRACKING_URI', None)\n"
        "from rl_core.common.config import SACConfig\n"
        "from rl_core.common.tracking import make_tracker\n"
        "from rl_core.run.training import train\n"
        "cfg = SACConfig(total_timesteps=300, hidden_sizes=(16,), batch_size=16,"
        " learning_starts=50, log_every=100)\n"
        "with make_tracker() as tracker:\n"
        "    train(cfg, tracker=tracker, show_progress=False)\n"
        "assert type(tracker).__name__ == 'NullTracker', tracker\n"
        "assert 'mlflow' not in sys.modules, sorted(m for m in sys.modules if 'mlflow' in m)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_make_tracker_picks_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(make_tracker(), NullTracker)
    assert not isinstance(make_tracker(), MlflowTracker)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///unused.db")
    assert isinstance(make_tracker(), MlflowTracker)


def test_tracker_logs_params_metrics_and_artifacts(mlflow_store: str) -> None:
    from mlflow import MlflowClient

    with make_tracker("unit", run_name="tiny") as tracker:
        result = train(TINY, tracker=tracker, show_progress=False)
    client = MlflowClient()
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["batch_size"] == "32"
    assert run.data.params["hidden_sizes"] == "[32, 32]"
    assert run.data.params["preset"] == TINY.applied_preset == "Pendulum-v1"
    for key in ("episode_return", "critic_loss", "actor_loss", "alpha", "steps_per_second"):
        assert key in run.data.metrics, key
    returns = client.get_metric_history(tracker.run_id, "episode_return")
    assert [m.step for m in returns] == result.episode_end_steps
    assert [m.value for m in returns] == pytest.approx(result.episode_returns)
    losses = client.get_metric_history(tracker.run_id, "critic_loss")
    assert [m.step for m in losses] == [200, 400, 600]
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert {"config.yaml", "reward_curve.png", "checkpoint"} <= artifacts
    assert [a.path for a in client.list_artifacts(tracker.run_id, "checkpoint")] == [
        "checkpoint/checkpoint.pt"
    ]


def test_run_is_marked_failed_when_training_raises(mlflow_store: str) -> None:
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError, match="boom"), make_tracker("unit") as tracker:
        raise RuntimeError("boom")
    assert MlflowClient().get_run(tracker.run_id).info.status == "FAILED"


def test_existing_run_is_reused_and_left_open(mlflow_store: str) -> None:
    from mlflow import MlflowClient

    with make_tracker("unit", end_on_exit=False) as first:
        first.log_metrics({"x": 1.0}, step=1)
    with make_tracker(run_id=first.run_id, tags={"stage": "two"}) as second:
        second.log_metrics({"x": 2.0}, step=2)
    client = MlflowClient()
    run = client.get_run(first.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["stage"] == "two"
    assert [m.value for m in client.get_metric_history(first.run_id, "x")] == [1.0, 2.0]
