"""Export the deterministic policy as ONNX and run it with ONNX Runtime.

TorchScript is deprecated in torch 2.13; ONNX (`torch.onnx.export`'s dynamo exporter, built on
`torch.export`) run by ONNX Runtime is the platform-independent inference path that replaces
it. The exported module is the TorchScript export's `InferenceActor`, with a dynamic batch
dimension; it is checked against the eager actor by `rl_core.policy.export.check_export` (same
observations, same tolerance, same refusal) and audited (`rl_core.policy.onnx_audit`) before any
ONNX Runtime session is built from it.

The exporter is chatty (warnings from torch.export internals, logged notes about missing
torchvision ops); those are hidden around the export call only. Its errors still raise.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rl_core.envs.spec import EnvSpec
from rl_core.policy.export import ExportResult, InferenceActor, check_export
from rl_core.policy.onnx_audit import check_size, parse_onnx
from rl_core.sac.networks import Actor

INPUT_NAME = "obs"
OUTPUT_NAME = "action"


class OnnxActor:
    """An ONNX actor in an ONNX Runtime session: one intra-op thread, sequential execution
    (as a policy server worker runs), callable like the TorchScript actor."""

    def __init__(self, model: bytes, name: str) -> None:
        parse_onnx(model, name)  # refuses what is not tensor maths, before ORT sees it
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: they raise anyway
        # The same audited bytes go to the session: no re-read of a file that may have changed.
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, observations: np.ndarray) -> np.ndarray:
        """Actions (batch, act_dim) float32 for observations (batch, obs_dim)."""
        try:
            return self.session.run(None, {self.input_name: observations})[0]
        except Exception as exc:  # ORT's errors are plain Exceptions: make them RuntimeErrors
            raise RuntimeError(f"ONNX Runtime: {exc}") from exc

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(observations.detach().numpy(), dtype=np.float32)
        return torch.from_numpy(self.run(array))


def onnx_program(actor: Actor) -> torch.onnx.ONNXProgram:
    """The deterministic policy through the dynamo exporter, batch dimension dynamic."""
    module = InferenceActor(actor).eval()
    example = torch.zeros(2, actor.obs_dim)  # 2, not 1: torch.export specialises size 1
    batch = torch.export.Dim("batch")
    with _quiet_exporter():
        return torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            verbose=False,
        )


def load_onnx(path: str | Path) -> OnnxActor:
    """Load an ONNX actor saved by `export_onnx`, refusing one that does more than tensor
    maths before ONNX Runtime runs it."""
    path = Path(path)
    check_size(path.stat().st_size, path.name)  # before it is read into memory
    return OnnxActor(path.read_bytes(), path.name)


def export_onnx(
    actor: Actor, path: str | Path, env: EnvSpec | str, *, n_random: int = 512, seed: int = 0
) -> ExportResult:
    """Export, save, reload and check the actor; raise `ExportMismatchError` on a mismatch
    (the file is deleted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(onnx_program(actor).model_proto.SerializeToString())
    return check_export(actor, load_onnx(path), path, env, n_random=n_random, seed=seed)


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's warnings and logged notes (not its errors) for one export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
