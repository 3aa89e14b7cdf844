"""What an ONNX actor may do: tensor maths, checked before any ONNX Runtime session runs it.

An ONNX file is data, but what ONNX Runtime does with it is open-ended: a node of a custom
domain runs whatever a registered op library does, `com.microsoft` contrib ops are ORT's own
code paths, control flow (`If`, `Loop`, `Scan`) runs subgraphs, `Random*` ops make a policy
non-deterministic, model-local functions replace a node by a body of their own, and external
data makes the runtime read other files. A policy needs none of that, so a model is refused,
naming what it found (the message shape of `rl_core.policy.actor_audit`'s TorchScript refusals),
unless:

- it is at most `MAX_ONNX_BYTES` and parses as an ONNX model;
- it defines no model-local function;
- every node of its graph is an op of the standard domain (`""` / `ai.onnx`) listed in
  `ALLOWED_ONNX_OPS` (none of them holds a subgraph, so the main graph is all that runs);
- every weight is stored inside the file.

`ALLOWED_ONNX_OPS` is what the dynamo exporter emits for every actor rl_core trains (plain,
gSDE's clipped mean, observation normalisation; `tests/unit/test_onnx_export.py` exports
each) plus their close maths siblings, as `actor_audit.ALLOWED_OPS` is for TorchScript.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from rl_core.policy.actor_audit import ActorAuditError

MAX_ONNX_BYTES = 256 * 2**20
"""Largest ONNX actor accepted (an actor's weights are a few MiB at most): read no bomb."""
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})

_PLUMBING = {"Constant", "Identity", "Cast"}
_ARITHMETIC = {
    *("Add", "Sub", "Mul", "Div", "Neg", "Reciprocal", "Abs", "Sign", "Sqrt", "Pow"),
    *("Exp", "Log", "Min", "Max", "Clip", "Sum", "Mean"),
    *("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Where"),
}
_LINEAR_ALGEBRA = {"MatMul", "Gemm"}
_ACTIVATIONS = {
    *("Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Gelu", "Sigmoid", "Tanh"),
    *("HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish"),
}
_SHAPES = {
    *("Shape", "Size", "Reshape", "Flatten", "Unsqueeze", "Squeeze", "Transpose"),
    *("Concat", "Split", "Slice", "Gather", "Expand"),
}
ALLOWED_ONNX_OPS = frozenset(_PLUMBING | _ARITHMETIC | _LINEAR_ALGEBRA | _ACTIVATIONS | _SHAPES)
"""Standard-domain op types an actor's graph may hold: constants, arithmetic, matmuls,
activations and reshaping. No control flow, no randomness, no sequences or strings."""


def parse_onnx(model: bytes, name: str) -> onnx.ModelProto:
    """`model` (the bytes of file `name`) parsed and checked by `check_onnx`."""
    check_size(len(model), name)
    try:
        proto = onnx.load_model_from_string(model)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ActorAuditError(f"{name}: not an ONNX model ({exc})") from None
    check_onnx(proto, name)
    return proto


def check_size(size: int, name: str) -> None:
    """Refuse an ONNX file of `size` bytes above `MAX_ONNX_BYTES` (before reading it)."""
    if size > MAX_ONNX_BYTES:
        raise ActorAuditError(
            f"{name}: {size} bytes of ONNX (at most {MAX_ONNX_BYTES} in a policy)"
        )


def check_onnx(model: onnx.ModelProto, name: str) -> None:
    """Refuse a model (`name`: its file) that does more than tensor maths, naming the op,
    function or weight that is not allowed."""
    if model.functions:
        function = model.functions[0]
        raise ActorAuditError(
            f"{name}: defines the function {function.domain}::{function.name}, which is not "
            "allowed in a policy (only standard ONNX ops, whose meaning is fixed)"
        )
    graph = model.graph
    for node in graph.node:
        if node.domain not in STANDARD_DOMAINS or node.op_type not in ALLOWED_ONNX_OPS:
            op = f"{node.domain or 'ai.onnx'}::{node.op_type}"
            raise ActorAuditError.disallowed_op(name, f"graph {graph.name or '(unnamed)'}", op)
    for tensor in _tensors(graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ActorAuditError(
                f"{name}: weight {tensor.name} is stored in an external file, which is not "
                "allowed in a policy (its weights are inside its one file)"
            )


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor the graph stores: initializers (dense and sparse) and node attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
