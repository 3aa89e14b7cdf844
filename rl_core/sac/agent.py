"""Soft Actor-Critic: the networks, their optimizers, and the update that trains them.

The algorithm is rl_core/sac/sac_reference.py (autograd and torch.optim.Adam, Stable-Baselines3's
loss terms, so results compare with RL-Zoo), which `step_compiler: reference` runs. The
other compilers run rl_core/sac/sac_step.py: the same step with backward passes written out,
compiled by TorchScript or inductor (rl_core/sac/step_compiler.py).
This class owns the tensors it works on: parameters, Polyak targets, and the Adam state that
checkpoints save (rl_core/sac/adam_state.py, in torch.optim.Adam's format).
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from rl_core.common.config import SACConfig
from rl_core.sac import aot_step, sac_reference
from rl_core.sac.adam_state import AdamState
from rl_core.sac.buffer import Batch
from rl_core.sac.networks import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    SDE_MEAN_CLIP,
    SDE_VARIANCE_EPS,
    Actor,
    TwinQCritic,
)
from rl_core.sac.sac_step import StepSettings
from rl_core.sac.step_compiler import compile_step, scripted_step
from rl_core.sac.step_state import StepState

log = logging.getLogger(__name__)

BF16_MIN_GEMM_WIDTH = 64
"""Narrower GEMMs stay fp32 under bf16: for them oneDNN's fixed cost per bf16 call outweighs
the arithmetic saved (a 256x4x256 product: about 67 us in bf16, 14 us in fp32, Intel Xeon)."""


def _bf16_layers(sizes: list[int], bf16: bool) -> list[bool]:
    """Which layers of an MLP with these widths run their GEMMs in bf16: hidden layers at
    least BF16_MIN_GEMM_WIDTH wide on both sides, when the config chose bf16. The output layer
    stays fp32: bf16 keeps 8 significant bits, too few for a Q-value of -200 (its spacing
    there is 1) or a Gaussian mean."""
    last = len(sizes) - 2
    return [
        bf16 and layer < last and min(fan_in, fan_out) >= BF16_MIN_GEMM_WIDTH
        for layer, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes))
    ]


def _actor_layers(actor: Actor) -> list[torch.Tensor]:
    """The actor's (weight, bias) pairs from input to head: its optimizer's order too."""
    linears = [m for m in actor.modules() if isinstance(m, nn.Linear)]
    return [p for linear in linears for p in (linear.weight, linear.bias)]


def _critic_layers(critic: TwinQCritic) -> list[torch.Tensor]:
    """The critics' (weight, bias) pairs from input to output, as `sac_step` takes layers."""
    return [p for pair in zip(critic.weights, critic.biases, strict=True) for p in pair]


class UpdateStats(NamedTuple):
    """What one gradient step reports: detached scalar tensors, named as they are logged.

    Tensors, not floats: the training loop sums them over a log window without a
    tensor-to-Python conversion per update.
    """

    critic_loss: torch.Tensor
    actor_loss: torch.Tensor
    alpha: torch.Tensor


class SAC:
    """Actor, twin critics with Polyak targets, and (optionally tuned) entropy coefficient."""

    def __init__(
        self,
        config: SACConfig,
        obs_dim: int,
        act_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
    ) -> None:
        self.config = config
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        obs_clip = config.obs_clip if config.normalize_obs else None
        sde_log_std_init = config.log_std_init if config.use_sde else None
        self.actor = Actor(
            obs_dim, act_dim, config.hidden_sizes, low, high, obs_clip, sde_log_std_init
        )
        self.exploration_matrix: torch.Tensor | None = None
        """gSDE's current noise matrix E for data collection (`reset_exploration`)."""
        # The critics see observations as the actor does: through its normalizer (or as is).
        self.normalize = self.actor.normalizer
        self.critic = TwinQCritic(obs_dim, act_dim, config.hidden_sizes)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.step_compiler = config.effective_step_compiler
        # Both save torch.optim.Adam's state_dict: checkpoints move between the two steps.
        adam = sac_reference.Adam if self.step_compiler == "reference" else AdamState
        self.critic_optimizer = adam(list(self.critic.parameters()), config.learning_rate)

        self.tune_alpha = config.ent_coef == "auto"
        initial_alpha = config.ent_coef_init if self.tune_alpha else float(config.ent_coef)
        self.log_alpha = torch.tensor([math.log(initial_alpha)], requires_grad=self.tune_alpha)
        self.target_entropy = (
            -float(act_dim) if config.target_entropy == "auto" else float(config.target_entropy)
        )
        # The step's actor: its layers, then gSDE's log-std matrix; Adam steps it together
        # with log-alpha.
        actor_tensors = _actor_layers(self.actor) + (
            [self.actor.sde_log_std] if config.use_sde else []
        )
        policy_params = actor_tensors + ([self.log_alpha] if self.tune_alpha else [])
        self.policy_optimizer = adam(policy_params, config.learning_rate)
        self._learner = sac_reference.Learner(
            self.actor,
            self.critic,
            self.critic_target,
            self.log_alpha,
            self.critic_optimizer,
            self.policy_optimizer,
            config.gamma,
            config.tau,
            self.target_entropy if self.tune_alpha else None,
        )
        bf16 = config.effective_matmul_precision == "bf16"
        widths = list(config.hidden_sizes)
        self._settings = StepSettings(
            gamma=config.gamma,
            tau=config.tau,
            target_entropy=self.target_entropy,
            tune_alpha=self.tune_alpha,
            act_dim=act_dim,
            log_std_min=LOG_STD_MIN,
            log_std_max=LOG_STD_MAX,
            actor_bf16=_bf16_layers([obs_dim, *widths, self.actor.head.out_features], bf16),
            critic_bf16=_bf16_layers([obs_dim + act_dim, *widths, 1], bf16),
            sde=config.use_sde,
            sde_mean_clip=SDE_MEAN_CLIP,
            sde_variance_eps=SDE_VARIANCE_EPS,
        )
        self.step_state = (
            None if self.step_compiler == "reference" else self._step_state(actor_tensors)
        )
        """What the compiled step reads and writes (rl_core/sac/sac_step.py); the reference step
        works on the modules and torch.optim.Adam instead."""
        self._step: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self._background: aot_step.BackgroundCompile | None = None
        """Inductor's step compiling while the updates run TorchScript (`begin_compiled_step`)."""

    def _step_state(self, actor_tensors: list[torch.Tensor]) -> StepState:
        """The step's view of this agent's tensors: the tensors themselves, and the Adam
        state of each (its learning rate a tensor that `set_learning_rate` fills)."""
        critic_layers = _critic_layers(self.critic)
        return StepState(
            actor_tensors,
            critic_layers,
            _critic_layers(self.critic_target),
            self.log_alpha,
            self.critic_optimizer.group(critic_layers),
            self.policy_optimizer.group(self.policy_optimizer.params),
        )

    @torch.inference_mode()
    def explore(self, obs: np.ndarray) -> np.ndarray:
        """A stochastic action for data collection, squashed to [-1, 1] (the replay space):
        fresh Gaussian noise, or under gSDE the current noise matrix's."""
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        if self.config.use_sde:
            if self.exploration_matrix is None:
                self.reset_exploration()
            features = self.actor.features(obs_tensor)
            pre_tanh = self.actor.mean(features) + features @ self.exploration_matrix
            return torch.tanh(pre_tanh)[0].numpy()
        mean, log_std = self.actor(obs_tensor)
        return torch.tanh(mean + torch.randn_like(mean) * log_std.exp())[0].numpy()

    @torch.inference_mode()
    def reset_exploration(self) -> None:
        """Draw gSDE's noise matrix anew: E ~ N(0, exp(sde_log_std)), as SB3's reset_noise."""
        log_std = self.actor.sde_log_std
        self.exploration_matrix = log_std.exp() * torch.randn_like(log_std)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic evaluation action tanh(mean), in the env's bounds."""
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        return self.actor.deterministic_action(obs_tensor)[0].numpy()

    def update(self, batch: Batch) -> UpdateStats:
        """One gradient step on a batch (rl_core/sac/sac_reference.py or rl_core/sac/sac_step.py);
        what it measured, by name."""
        if self.step_compiler == "reference":
            return UpdateStats(*sac_reference.update(self._learner, batch))
        batch = self._normalized(batch)
        if self._step is None:  # inductor compiles for these shapes (unless in the background)
            compiler = "torchscript" if self._background is not None else self.step_compiler
            self._step = compile_step(compiler, batch, self.step_state, self._settings)
        critic_loss, actor_loss, alpha = self._step(batch, self.step_state, self._settings)
        return UpdateStats(critic_loss, actor_loss, alpha)

    def _normalized(self, batch: Batch) -> Batch:
        """The batch as the step takes it: observations through the actor's normalizer."""
        return batch._replace(
            obs=self.normalize(batch.obs), next_obs=self.normalize(batch.next_obs)
        )

    def begin_compiled_step(self, example: Batch) -> None:
        """For an inductor run, compile its step for batches laid out as `example` (zeros
        will do) in the background, and run TorchScript's step (the same function, on the same
        tensors) until `switch_to_compiled` finds the package ready. Without this call, the
        first update compiles and waits."""
        if self.step_compiler == "inductor" and self._step is None and self._background is None:
            self._background = aot_step.background_compile(
                self._normalized(example), self.step_state, self._settings
            )

    def switch_to_compiled(self, wait: bool = False) -> bool:
        """Whether updates run inductor's compiled step from the next one on: after
        `begin_compiled_step`, once its package is ready (with `wait`, blocking until it is);
        without it, from the first update. A failed compile leaves TorchScript's step, with one
        warning."""
        background = self._background
        if background is not None:
            status = background.wait() if wait else background.poll()
            if status == "running":
                return False
            self._background = None
            if status == "ready":
                self._step = aot_step.load(background.path)
            else:
                self._step = scripted_step()
                log.warning(
                    "step_compiler=inductor: compiling the training step failed, training goes "
                    "on with TorchScript's step (step_compiler=torchscript needs no C++ "
                    "compiler):\n%s",
                    background.errors,
                )
        compiled = self._step is None or isinstance(self._step, aot_step.CompiledStep)
        return self.step_compiler == "inductor" and compiled

    @property
    def step_compiling(self) -> bool:
        """Whether inductor's step is compiling in the background (`begin_compiled_step`) and
        the updates run TorchScript's meanwhile."""
        return self._background is not None

    def stop_background_compile(self) -> None:
        """Stop a background compile still running (the run ended first); no switch follows."""
        if self._background is not None:
            self._background.close()
            self._background = None

    def set_learning_rate(self, learning_rate: float) -> None:
        """The rate every optimizer uses from the next step on (a learning-rate schedule)."""
        for optimizer in (self.critic_optimizer, self.policy_optimizer):
            optimizer.lr = learning_rate

    def state_dict(self) -> dict[str, Any]:
        """Every tensor and optimizer state needed to continue training exactly."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            **({} if self.exploration_matrix is None else {"exploration": self.exploration_matrix}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.exploration_matrix = state.get("exploration")
        if self.step_state is not None:  # the optimizers' loaded state is in new tensors
            self.step_state = self._step_state(self.step_state.actor)
