"""The policy being served: one registered version's exported actor, loaded and checked.

The version's MLflow model folder (`rl_core.policy.policy_model`: a pyfunc around the TorchScript
file, with the ONNX file beside it) is fetched by version number, never by alias, so the alias
moving during a download cannot mix two versions; the server then calls the exported actor
directly, its fast path, in the runtime `ServingSettings.runtime` names: TorchScript, ONNX
Runtime, or (`auto`) the faster of both on a short batch-1 timing. Before anything of it runs,
its files are checked against the sha256 digests its version tags record
(`rl_core.policy.policy_integrity`) and its actors against the allowed ops
(`rl_core.policy.actor_audit`, `rl_core.policy.onnx_audit`). A version is only served after a
warm-up forward pass proves it maps observations of its declared size to finite actions of its
declared size.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
from mlflow import MlflowClient

from rl_core.envs.spec import EnvSpec
from rl_core.policy.latency import timed_calls
from rl_core.policy.onnx_export import OnnxActor
from rl_core.policy.policy_integrity import PolicyIntegrityError
from rl_core.policy.policy_model import PolicyActors, load_registered_actors

log = logging.getLogger(__name__)

Runtime = Literal["torchscript", "onnx", "auto"]
"""What may run a version (`ServingSettings.runtime`)..."""
ServedRuntime = Literal["torchscript", "onnx"]
"""...and what does."""
Actions = Callable[[list[list[float]]], list[list[float]]]

WARM_UP_BATCHES = (1, 2, 1)
"""TorchScript profiles the first calls; running them here keeps them off live requests."""
AUTO_TIMING_CALLS = 300
"""Batch-1 calls of each runtime timed (interleaved) when `auto` chooses: ~20 ms in all."""


class PolicyLoadError(RuntimeError):
    """A registered version cannot be served (files missing, wrong or non-finite outputs)."""


@dataclass(frozen=True)
class ServedPolicy:
    """A loaded actor and what clients need to know about it."""

    model_name: str
    version: str
    env: EnvSpec
    obs_dim: int
    act_dim: int
    runtime: ServedRuntime
    act: Actions
    """Deterministic actions for a batch of observations, in one forward pass of `runtime`."""


@torch.inference_mode()
def _torchscript_actions(
    module: torch.jit.ScriptModule, observations: list[list[float]]
) -> list[list[float]]:
    return module(torch.tensor(observations, dtype=torch.float32)).tolist()


def _onnx_actions(actor: OnnxActor, observations: list[list[float]]) -> list[list[float]]:
    return actor.run(np.asarray(observations, dtype=np.float32)).tolist()


def _backend(
    actors: PolicyActors, runtime: Runtime, obs_dim: int, what: str
) -> tuple[ServedRuntime, Actions]:
    """The runtime that runs the version and its `act`. `auto` times both at batch 1 and
    keeps the faster; a version without an ONNX actor runs TorchScript whatever is asked."""
    torchscript = partial(_torchscript_actions, actors.torchscript)
    if actors.onnx is None:
        if runtime == "onnx":
            log.warning("%s has no ONNX actor (exported before ONNX): serving TorchScript", what)
        return "torchscript", torchscript
    onnx = partial(_onnx_actions, actors.onnx)
    if runtime == "torchscript":
        return "torchscript", torchscript
    if runtime == "onnx":
        return "onnx", onnx
    observation = [[0.0] * obs_dim]
    calls = [partial(torchscript, observation), partial(onnx, observation)]
    timed_calls(calls, AUTO_TIMING_CALLS // 10)  # warm-up
    torchscript_us, onnx_us = (float(np.median(us)) for us in timed_calls(calls, AUTO_TIMING_CALLS))
    chosen = "onnx" if onnx_us < torchscript_us else "torchscript"
    log.info(
        "%s: runtime auto chose %s (batch-1 median: torchscript %.1f µs, onnx %.1f µs)",
        what,
        chosen,
        torchscript_us,
        onnx_us,
    )
    return chosen, onnx if chosen == "onnx" else torchscript


def load_policy(model_name: str, version: str, runtime: Runtime = "auto") -> ServedPolicy:
    """Download version `version` of `model_name`, verify its files against the digests its
    version tags record, load its actors, pick the `runtime` and check it."""
    what = f"{model_name} v{version}"
    registered = MlflowClient().get_model_version(model_name, str(version))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            uri = f"models:/{model_name}/{version}"
            actors, meta = load_registered_actors(uri, registered.tags, scratch, what)
            chosen, act = _backend(actors, runtime, meta.obs_dim, what)
            policy = ServedPolicy(
                model_name=model_name,
                version=str(version),
                env=meta.env,
                obs_dim=meta.obs_dim,
                act_dim=meta.act_dim,
                runtime=chosen,
                act=act,
            )
        except PolicyIntegrityError as exc:  # its message names the version already
            raise PolicyLoadError(str(exc)) from exc
        except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise PolicyLoadError(f"{what}: unusable model folder: {exc}") from exc
    _check(policy)
    return policy


def _check(policy: ServedPolicy) -> None:
    for batch in WARM_UP_BATCHES:
        try:
            actions = policy.act([[0.0] * policy.obs_dim] * batch)
        except RuntimeError as exc:
            raise PolicyLoadError(
                f"{policy.model_name} v{policy.version}: forward pass on a batch of {batch} "
                f"zero observations (obs_dim {policy.obs_dim}) failed: {exc}"
            ) from exc
        shapes_ok = len(actions) == batch and all(len(a) == policy.act_dim for a in actions)
        if not shapes_ok or not all(math.isfinite(x) for a in actions for x in a):
            raise PolicyLoadError(
                f"{policy.model_name} v{policy.version}: a batch of {batch} zero observations "
                f"(obs_dim {policy.obs_dim}) gave {actions!r}, expected {batch} finite actions "
                f"of act_dim {policy.act_dim}"
            )
