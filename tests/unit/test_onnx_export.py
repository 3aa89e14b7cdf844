"""The ONNX export is the eager policy (checked like the TorchScript export, refused when it is
not), runs in ONNX Runtime for any batch size, and an ONNX file is refused before ONNX Runtime
sees it unless it only does tensor maths."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from rl_core.policy import onnx_export
from rl_core.policy.actor_audit import ActorAuditError
from rl_core.policy.export import EQUIVALENCE_TOLERANCE, ExportMismatchError
from rl_core.policy.onnx_audit import ALLOWED_ONNX_OPS
from rl_core.policy.onnx_export import OnnxActor, export_onnx, load_onnx, onnx_program
from rl_core.sac.networks import Actor
from tests.hostile_actors import shifted_actor
from tests.unit.test_actor_audit import _variants


def _structures() -> list[tuple[str, object]]:
    """One variant of the audit tests per network structure (gSDE's clipped mean or not,
    observation normalisation or not): the others differ only in layer widths."""
    seen: dict[tuple[bool, bool], tuple[str, object]] = {}
    for name, config in _variants():
        seen.setdefault((config.use_sde, config.normalize_obs), (name, config))
    return list(seen.values())


@pytest.mark.parametrize(("name", "config"), _structures(), ids=[n for n, _ in _structures()])
def test_every_actor_rl_core_trains_exports_to_onnx_like_eager(name, config) -> None:
    act_dim = 3
    torch.manual_seed(0)
    actor = Actor(
        obs_dim=5,
        act_dim=act_dim,
        hidden_sizes=config.hidden_sizes,
        action_low=-2 * torch.ones(act_dim),
        action_high=2 * torch.ones(act_dim),
        obs_clip=config.obs_clip if config.normalize_obs else None,
        sde_log_std_init=config.log_std_init if config.use_sde else None,
    )
    if config.normalize_obs:  # statistics that matter, not the identity
        actor.normalizer.update(torch.randn(64, 5) * 3 + 1)
    model = onnx_program(actor).model_proto
    assert {node.op_type for node in model.graph.node} <= ALLOWED_ONNX_OPS
    loaded = OnnxActor(model.SerializeToString(), "actor.onnx")
    for batch in (1, 7, 128):  # one export, any batch size
        observations = torch.randn(batch, 5) * 4
        with torch.inference_mode():
            expected = actor.deterministic_action(observations)
        torch.testing.assert_close(
            loaded(observations), expected, atol=EQUIVALENCE_TOLERANCE, rtol=0
        )


@pytest.fixture(scope="module")
def pendulum_actor() -> Actor:
    torch.manual_seed(4)
    actor = Actor(3, 1, (32, 32), torch.tensor([-2.0]), torch.tensor([2.0]), obs_clip=10.0)
    actor.normalizer.update(torch.randn(32, 3))
    return actor


def test_export_checks_the_file_against_eager_quietly(pendulum_actor, tmp_path, capfd) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no exporter warning reaches the user...
        result = export_onnx(pendulum_actor, tmp_path / "actor.onnx", "Pendulum-v1")
    assert capfd.readouterr() == ("", "")  # ...and nothing is printed or logged
    assert result.path.is_file()
    assert result.max_abs_diff <= EQUIVALENCE_TOLERANCE
    assert result.n_checked > 512  # random plus real observations, as for TorchScript


def test_a_mismatching_export_is_refused_and_deleted(pendulum_actor, tmp_path, monkeypatch):
    real_program = onnx_export.onnx_program

    def shifted_program(actor: Actor):
        return real_program(shifted_actor(actor))

    monkeypatch.setattr(onnx_export, "onnx_program", shifted_program)
    with pytest.raises(ExportMismatchError, match=r"differs from the eager actor by \d"):
        export_onnx(pendulum_actor, tmp_path / "bad.onnx", "Pendulum-v1")
    assert not (tmp_path / "bad.onnx").exists()


def test_exporter_errors_still_reach_the_user(monkeypatch, tmp_path) -> None:
    def unexportable(*args, **kwargs):
        raise torch.onnx.errors.UnsupportedOperatorError("aten::weird", 20, 20)

    monkeypatch.setattr(torch.onnx, "export", unexportable)
    actor = Actor(3, 1, (8,), torch.tensor([-1.0]), torch.tensor([1.0]))
    with pytest.raises(torch.onnx.errors.UnsupportedOperatorError, match="aten::weird"):
        export_onnx(actor, tmp_path / "actor.onnx", "Pendulum-v1")


def _model(node: onnx.NodeProto, **kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "main_graph",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 3])],
        **kwargs,
    )
    opsets = [helper.make_opsetid("", 20), helper.make_opsetid("com.evil", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def _with_function() -> onnx.ModelProto:
    body = helper.make_node("Relu", ["x"], ["y"])
    function = helper.make_function("com.evil", "Shell", ["x"], ["y"], [body], [])
    model = _model(helper.make_node("Shell", ["obs"], ["action"], domain="com.evil"))
    model.functions.append(function)
    return model


def _with_external_weight() -> onnx.ModelProto:
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3], [0.0, 0.0, 0.0])
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("float_data")
    weight.external_data.add(key="location", value="../../etc/passwd")
    return _model(helper.make_node("Add", ["obs", "w"], ["action"]), initializer=[weight])


@pytest.mark.parametrize(
    ("model", "refusal"),
    [
        (
            _model(helper.make_node("Exec", ["obs"], ["action"], domain="com.evil")),
            "actor.onnx: graph main_graph calls com.evil::Exec, which is not allowed in a "
            "policy (allowed: tensor math ops)",
        ),
        (
            _model(helper.make_node("Relu", ["obs"], ["action"], domain="com.evil")),
            "actor.onnx: graph main_graph calls com.evil::Relu, which is not allowed in a "
            "policy (allowed: tensor math ops)",
        ),
        (
            _model(helper.make_node("RandomNormalLike", ["obs"], ["action"])),
            "actor.onnx: graph main_graph calls ai.onnx::RandomNormalLike, which is not "
            "allowed in a policy (allowed: tensor math ops)",
        ),
        (
            _with_function(),
            "actor.onnx: defines the function com.evil::Shell, which is not allowed in a "
            "policy (only standard ONNX ops, whose meaning is fixed)",
        ),
        (
            _with_external_weight(),
            "actor.onnx: weight w is stored in an external file, which is not allowed in a "
            "policy (its weights are inside its one file)",
        ),
    ],
    ids=["custom-domain", "custom-domain-math-name", "outside-allowlist", "function", "external"],
)
def test_an_onnx_file_that_does_more_than_maths_is_refused_naming_it(
    model: onnx.ModelProto, refusal: str, tmp_path: Path
) -> None:
    path = tmp_path / "actor.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ActorAuditError) as refused:
        load_onnx(path)
    assert str(refused.value) == refusal


def test_the_audit_is_what_refuses_a_model_onnx_runtime_would_run(tmp_path: Path) -> None:
    """A standard op outside the allowlist is a model ONNX Runtime runs happily: the refusal
    above is the audit's, not the runtime's."""
    model = _model(helper.make_node("RandomNormalLike", ["obs"], ["action"]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (actions,) = session.run(None, {"obs": np.zeros((2, 3), dtype=np.float32)})
    assert actions.shape == (2, 3)


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "actor.onnx"
    path.write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(ActorAuditError, match=r"^actor\.onnx: not an ONNX model"):
        load_onnx(path)
