"""The policy being served: one registered version's TorchScript actor, loaded and checked.

The version's MLflow model folder (`rl_core.policy_model`: a pyfunc around the TorchScript
file) is fetched by version number, never by alias, so the alias moving during a download
cannot mix two versions; the server then calls the TorchScript actor directly, its fast path.
Before anything of it runs, its files are checked against the sha256 digests its version tags
record (`rl_core.policy_integrity`) and its actor against the allowed ops
(`rl_core.actor_audit`). A version is only served after a warm-up forward pass proves it maps
observations of its declared size to finite actions of its declared size.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass

import torch
from mlflow import MlflowClient

from rl_core.envs import EnvSpec
from rl_core.policy_integrity import PolicyIntegrityError
from rl_core.policy_model import load_registered_policy

WARM_UP_BATCHES = (1, 2, 1)
"""TorchScript profiles the first calls; running them here keeps them off live requests."""


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
    module: torch.jit.ScriptModule

    @torch.inference_mode()
    def act(self, observations: list[list[float]]) -> list[list[float]]:
        """Deterministic actions for a batch of observations, in one forward pass."""
        return self.module(torch.tensor(observations, dtype=torch.float32)).tolist()


def load_policy(model_name: str, version: str) -> ServedPolicy:
    """Download version `version` of `model_name`, verify its files against the digests its
    version tags record, load its actor and check it."""
    what = f"{model_name} v{version}"
    registered = MlflowClient().get_model_version(model_name, str(version))
    with tempfile.TemporaryDirectory() as scratch:
        try:
            uri = f"models:/{model_name}/{version}"
            module, meta = load_registered_policy(uri, registered.tags, scratch, what)
            policy = ServedPolicy(
                model_name=model_name,
                version=str(version),
                env=meta.env,
                obs_dim=meta.obs_dim,
                act_dim=meta.act_dim,
                module=module,
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
