"""Adam's state for one group of parameters: moments, step counts and hyperparameters.

`sac_step.adam_step` updates it (the arithmetic `torch.optim.Adam(fused=True)` runs); this
only holds it, and saves and loads it in `torch.optim.Adam`'s `state_dict` format, so checkpoints
of either load into the other. Not `torch.optim.Adam` itself: constructing one imports
torch._dynamo and sympy (about 70 MiB of every training process, and a second of its start)
for a `step()` rlops never calls.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rl_core.sac.step_state import AdamGroup


class AdamState:
    """Zero moments and step counts for `params` until the first step (or a loaded state)."""

    def __init__(
        self,
        params: list[Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self._lr = torch.tensor(lr, dtype=torch.float64)
        self.betas, self.eps = betas, eps
        self.exp_avgs: list[Tensor] = [torch.empty(0)] * len(self.params)
        self.exp_avg_sqs: list[Tensor] = [torch.empty(0)] * len(self.params)
        self.steps: list[Tensor] = [torch.empty(0)] * len(self.params)
        for i in range(len(self.params)):
            self._start_from_zero(i)

    @property
    def lr(self) -> float:
        return float(self._lr)

    @lr.setter
    def lr(self, value: float) -> None:
        """Filled in place: every `group` handed out sees the new rate at its next step."""
        self._lr.fill_(value)

    def _start_from_zero(self, i: int) -> None:
        """Parameter i's state before its first step."""
        self.exp_avgs[i] = torch.zeros_like(self.params[i])
        self.exp_avg_sqs[i] = torch.zeros_like(self.params[i])
        self.steps[i] = torch.tensor(0.0)

    def group(self, params: list[Tensor]) -> AdamGroup:
        """The state of `params` (each one of this group's), aligned in that order."""
        # By identity, mapped per call: a deep copy of the agent finds its own parameters.
        position = {id(p): i for i, p in enumerate(self.params)}
        order = [position[id(p)] for p in params]
        return AdamGroup(
            params,
            [self.exp_avgs[i] for i in order],
            [self.exp_avg_sqs[i] for i in order],
            [self.steps[i] for i in order],
            self._lr,
            *self.betas,
            self.eps,
        )

    def state_dict(self) -> dict[str, Any]:
        """As `torch.optim.Adam(params, fused=True).state_dict()` has it (parameters by
        position, the tensors themselves, not copies)."""
        return {
            "state": {
                i: {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
                for i, (step, exp_avg, exp_avg_sq) in enumerate(
                    zip(self.steps, self.exp_avgs, self.exp_avg_sqs, strict=True)
                )
            },
            "param_groups": [
                {
                    "lr": self.lr,
                    "betas": self.betas,
                    "eps": self.eps,
                    "weight_decay": 0,
                    "amsgrad": False,
                    "maximize": False,
                    "foreach": None,
                    "capturable": False,
                    "differentiable": False,
                    "fused": True,
                    "decoupled_weight_decay": False,
                    "params": list(range(len(self.params))),
                }
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state saved by `state_dict` or by `torch.optim.Adam`; a parameter
        without one (a checkpoint from before the first update) starts from zero."""
        (group,) = state["param_groups"]
        if len(group["params"]) != len(self.params):
            raise ValueError(
                f"Adam state for {len(group['params'])} parameters cannot load into a group of "
                f"{len(self.params)}"
            )
        self.lr, self.betas, self.eps = group["lr"], tuple(group["betas"]), group["eps"]
        for i, (param, key) in enumerate(zip(self.params, group["params"], strict=True)):
            saved = state["state"].get(key)
            if saved is None:
                self._start_from_zero(i)
                continue
            if saved["exp_avg"].shape != param.shape:
                raise ValueError(
                    f"Adam state of parameter {i} has shape {tuple(saved['exp_avg'].shape)}, "
                    f"the parameter {tuple(param.shape)}"
                )
            self.exp_avgs[i] = saved["exp_avg"].to(param.dtype).clone()
            self.exp_avg_sqs[i] = saved["exp_avg_sq"].to(param.dtype).clone()
            self.steps[i] = torch.as_tensor(saved["step"], dtype=torch.float32).clone()
