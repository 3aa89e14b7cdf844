import torch

from benchmarks.rl_zoo_budget import (
    PUBLISHED,
    Span,
    plan,
    sb3_projected_seconds,
    span_speed,
    verdict,
)
from rl_core.common.presets import PRESETS
from rl_core.policy.export import script_actor
from rl_core.policy.latency import benchmark_latency, format_latency_table
from rl_core.policy.onnx_export import OnnxActor, onnx_program
from rl_core.sac.networks import Actor


def test_benchmark_rows_and_table() -> None:
    actor = Actor(3, 1, (64, 64), torch.tensor([-2.0]), torch.tensor([2.0]))
    threads = torch.get_num_threads()
    rows = benchmark_latency(actor, script_actor(actor), 3, batch_sizes=(1, 4), calls=50, warmup=5)
    assert torch.get_num_threads() == threads  # restored after the single-threaded run
    assert [r.batch_size for r in rows] == [1, 4]
    for row in rows:
        assert 0 < row.eager_median_us <= row.eager_p95_us
        assert 0 < row.exported_median_us <= row.exported_p95_us
        assert row.speedup == row.eager_median_us / row.exported_median_us
        assert set(row.as_dict()) >= {"batch_size", "speedup", "exported_p95_us"}
        assert row.onnx_median_us is None and row.onnx_speedup is None  # not measured
    text = format_latency_table(rows)
    for word in ("batch", "eager", "scripted", "speedup"):
        assert word in text
    assert "onnx" not in text
    assert f"x{rows[0].speedup:.2f}" in text


def test_onnx_runtime_is_measured_beside_eager_and_torchscript() -> None:
    actor = Actor(3, 1, (64, 64), torch.tensor([-2.0]), torch.tensor([2.0]))
    model = onnx_program(actor).model_proto
    onnx_actor = OnnxActor(model.SerializeToString(), "actor.onnx")
    rows = benchmark_latency(
        actor, script_actor(actor), 3, batch_sizes=(1, 32), calls=50, warmup=5, onnx=onnx_actor
    )
    for row in rows:
        assert 0 < row.onnx_median_us <= row.onnx_p95_us
        assert row.onnx_speedup == row.eager_median_us / row.onnx_median_us
        assert {"onnx_median_us", "onnx_p95_us", "onnx_speedup"} <= set(row.as_dict())
    text = format_latency_table(rows)
    assert "onnx" in text and "onnx speedup" in text
    for row in rows:
        assert f"{row.onnx_median_us:.1f} / {row.onnx_p95_us:.1f}" in text
        assert f"x{row.onnx_speedup:.2f}" in text


def test_full_budget_speed_is_steps_over_seconds_of_the_windows_inside_the_span() -> None:
    # windows 0-100 at 50/s (2 s), 100-200 at 100/s (1 s), 200-300 at 25/s (4 s)
    log = [(100, 50.0), (200, 100.0), (300, 25.0)]
    assert span_speed(log, 0, 300) == Span(300 / 7, 0, 300)  # not the mean of the speeds
    assert span_speed(log, 100, 300) == Span(40.0, 100, 300)
    assert span_speed(log, 150, 300) == Span(25.0, 200, 300)  # only whole windows count
    assert span_speed(log, 0, 50) is None


def test_full_budget_verdict_against_the_published_score() -> None:
    published = PUBLISHED["HalfCheetah-v5"]
    assert (published.zoo_env, published.budget) == ("HalfCheetah-v3", 1_000_000)
    assert verdict(published.mean, published) == "above"
    assert verdict(published.mean - published.std, published) == "within 1 std"
    assert verdict(published.mean - published.std - 0.01, published) == "BELOW"


def test_sb3_projection_is_its_warmup_then_the_rest_at_its_updating_speed() -> None:
    window = {"warmup_steps": 1_000, "warmup_seconds": 2.0, "updating_steps": 3_000}
    window["updating_seconds"] = 30.0
    # not 101,000 steps at the updating speed (1,010 s): the warm-up is 5x faster
    assert sb3_projected_seconds(window, 101_000) == 2.0 + 100_000 / 100


def test_full_budget_plan_runs_the_preset_and_shrinks_only_a_smoke_budget() -> None:
    assert set(PUBLISHED) <= set(PRESETS)  # every published row trains RL-Zoo's recipe
    full = plan("LunarLanderContinuous-v3", None, 2)
    assert (full.budget, full.fields) == (500_000, [])
    smoke = plan("LunarLanderContinuous-v3", 2_000, 2)
    assert smoke.fields == ["learning_starts=1000", "log_every=100"]  # preset: 10,000
    job = smoke.job(0)
    assert job["steps"] == 2_000 and job["hyperparameters"]["learning_starts"] == 1_000
    assert job["hyperparameters"]["hidden_sizes"] == [400, 300]
