"""What a TorchScript actor may do: tensor maths, checked before any of its code runs.

A TorchScript file is code. `torch.jit.load` itself runs a scripted `__setstate__` when the
archive defines one, and a module's methods and forward hooks can call any registered op:
`aten::from_file` and `aten::save` read and write files. A policy needs none of that, so a
file is refused in two steps, each naming what it found:

1. before loading: its TorchScript source (the archive's `code/**.py`) may not define
   `__setstate__`, the only hook torch 2.13 runs while loading (its unpickler calls it on
   every object whose class has one);
2. after loading, before any call: every node of every method and forward (pre-)hook of the
   module and its submodules, nested blocks included, must be an op of `ALLOWED_OPS`.

`ALLOWED_OPS` is what real exports of every actor rl_core trains use (plain, gSDE's clipped
mean, observation normalisation; `tests/unit/test_actor_audit.py` exports each) plus their
close maths siblings. Nothing touching files, processes, storage, threads or the interpreter;
no in-place ops (a call must not change the module) and no loops (a call must end).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import torch

LOAD_HOOKS = ("__setstate__",)
"""Methods torch.jit.load runs while it reads an archive."""
MAX_CODE_BYTES = 4 * 2**20
"""TorchScript source an archive may hold (an actor's is a few KiB): read no bomb."""

_GRAPH_PLUMBING = {
    "prim::Constant",
    "prim::GetAttr",  # reads the module's own parameters (a module scripted without freezing)
    "prim::ListConstruct",
    "prim::ListUnpack",
    "prim::TupleConstruct",
    "prim::TupleUnpack",
    "prim::TupleIndex",
    "prim::If",  # branches only: no prim::Loop, so every call ends
}
_ARITHMETIC = {
    *(f"aten::{op}" for op in ("add", "sub", "rsub", "mul", "div", "neg", "reciprocal")),
    *(f"aten::{op}" for op in ("abs", "sign", "square", "sqrt", "rsqrt", "pow")),
    *(f"aten::{op}" for op in ("exp", "expm1", "log", "log1p", "minimum", "maximum")),
    *(f"aten::{op}" for op in ("clamp", "clamp_min", "clamp_max")),
    *(f"aten::{op}" for op in ("eq", "ne", "lt", "le", "gt", "ge")),  # prim::If's conditions
}
_LINEAR_ALGEBRA = {f"aten::{op}" for op in ("matmul", "mm", "bmm", "addmm", "baddbmm", "linear")}
_ACTIVATIONS = {
    *(f"aten::{op}" for op in ("relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu")),
    *(f"aten::{op}" for op in ("silu", "mish", "sigmoid", "tanh", "hardtanh", "hardsigmoid")),
    *(f"aten::{op}" for op in ("hardswish", "softplus", "softsign")),
}
_SHAPES = {
    *(f"aten::{op}" for op in ("size", "slice", "select", "narrow", "view", "reshape")),
    *(f"aten::{op}" for op in ("flatten", "unsqueeze", "squeeze", "t", "transpose", "permute")),
    *(f"aten::{op}" for op in ("contiguous", "expand", "cat", "stack", "split", "chunk")),
}
ALLOWED_OPS = frozenset(_GRAPH_PLUMBING | _ARITHMETIC | _LINEAR_ALGEBRA | _ACTIVATIONS | _SHAPES)
"""Node kinds an actor's graphs may hold: constants, arithmetic, matmuls, activations and
reshaping (slicing a head's output, as the eager actor does)."""


class ActorAuditError(ValueError):
    """An exported actor (TorchScript or ONNX) that does more than tensor maths; the message
    names what."""

    @classmethod
    def disallowed_op(cls, file: str, where: str, op: str) -> ActorAuditError:
        """The refusal of a graph that calls `op` (in `where`, of `file`): one wording for
        every export format."""
        return cls(
            f"{file}: {where} calls {op}, which is not allowed in a policy "
            "(allowed: tensor math ops)"
        )


def check_archive(path: str | Path) -> None:
    """Refuse a TorchScript archive whose source defines a hook `torch.jit.load` runs."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            sources = [info for info in archive.infolist() if info.filename.endswith(".py")]
            size = sum(info.file_size for info in sources)
            if size > MAX_CODE_BYTES:
                raise ActorAuditError(
                    f"{path.name}: {size} bytes of TorchScript source (at most "
                    f"{MAX_CODE_BYTES} in a policy)"
                )
            for info in sources:
                code = archive.read(info).decode("utf-8", errors="replace")
                for hook in LOAD_HOOKS:
                    if hook in code:
                        raise ActorAuditError(
                            f"{path.name}: {info.filename} defines {hook}, which torch.jit.load "
                            "would run; a policy may not run code when it is loaded"
                        )
    except zipfile.BadZipFile as exc:
        raise ActorAuditError(f"{path.name}: not a TorchScript archive ({exc})") from None


def check_graphs(module: torch.jit.ScriptModule, name: str) -> None:
    """Refuse a loaded module (`name`: its file) any of whose graphs calls an op outside
    `ALLOWED_OPS`, naming the op and the method."""
    for method, graph in _graphs(module):
        for kind in _node_kinds(graph):
            if kind not in ALLOWED_OPS:
                raise ActorAuditError.disallowed_op(name, method, kind)


def _graphs(module: torch.jit.ScriptModule) -> Iterator[tuple[str, torch.Graph]]:
    """(qualified method name, graph with calls inlined) of every method and forward hook of
    `module` and its submodules: everything a call of the module can run."""
    for prefix, submodule in module.named_modules():
        scripted = submodule._c
        owner = f"{prefix}." if prefix else ""
        for method in scripted._method_names():
            yield owner + method, scripted._get_method(method).inlined_graph
        hooks = [*scripted._get_forward_pre_hooks(), *scripted._get_forward_hooks()]
        for hook in hooks:
            yield f"{owner}{hook.name} (forward hook)", hook.inlined_graph


def _node_kinds(block: torch.Graph | torch.Block) -> Iterator[str]:
    for node in block.nodes():
        yield node.kind()
        for nested in node.blocks():
            yield from _node_kinds(nested)
