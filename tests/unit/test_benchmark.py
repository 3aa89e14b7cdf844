import torch

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
