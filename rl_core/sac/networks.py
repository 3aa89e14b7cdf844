"""The two networks of SAC: a squashed-Gaussian actor and a fused pair of Q critics.

The critics are one module whose weights carry a leading "which critic" dimension, so both
Q-networks run in one batched matmul per layer instead of two separate networks: half the
kernel launches, same maths.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
SDE_MEAN_CLIP = 2.0
"""Under gSDE the pre-squash mean is clipped to +-2 (SB3's `clip_mean`): with the noise's
scale learned per feature, an unbounded mean drifts into tanh's flat tails."""
SDE_VARIANCE_EPS = 1e-6
"""Added to gSDE's variance before its square root (SB3's `epsilon`): features can all be 0."""


def _mlp(in_dim: int, hidden_sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class ObsNormalizer(nn.Module):
    """Running mean and variance of the observations seen in training; maps an observation
    to (obs - mean) / sqrt(var + eps), clipped to [-clip, clip].

    The statistics are buffers: they travel with the actor into checkpoints, actor files and
    the exported TorchScript module, so whatever serves the policy takes raw observations.
    Only training updates them (`update`); evaluation and serving use them frozen.
    """

    def __init__(self, obs_dim: int, clip: float, eps: float = 1e-8) -> None:
        super().__init__()
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("var", torch.ones(obs_dim))
        self.register_buffer("count", torch.tensor(1e-4))  # SB3's RunningMeanStd start

    @torch.no_grad()
    def update(self, observations: torch.Tensor) -> None:
        """Fold a batch of observations (batch, obs_dim) into the running moments (Chan et
        al.'s parallel update, as SB3's RunningMeanStd)."""
        batch_mean = observations.mean(0)
        batch_var = observations.var(0, unbiased=False)
        batch_count = observations.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        moments = self.var * self.count + batch_var * batch_count
        self.var.copy_((moments + delta.square() * self.count * batch_count / total) / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


@dataclass(frozen=True)
class ActorSpec:
    """What it takes to build an `Actor` (saved beside its weights, as SB3 saves a policy's
    constructor arguments): loading one needs no env, critics or optimizers."""

    obs_dim: int
    act_dim: int
    hidden_sizes: tuple[int, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    obs_clip: float | None = None
    """Observations are normalized (`ObsNormalizer`) and clipped to +-obs_clip; None: raw."""
    sde: bool = False
    """Explores with gSDE: the head gives the mean alone, `sde_log_std` scales the noise."""


class Actor(nn.Module):
    """Squashed-Gaussian policy: a = tanh(u) * scale + bias with u ~ N(mean, std).

    The std comes from the head (a log-std per state and action), or under gSDE (generalized
    state-dependent exploration, Raffin et al. 2021, as SB3's SAC does it) from the
    `sde_log_std` matrix: u = mean + features @ E with E ~ N(0, exp(sde_log_std)), so
    std^2 = features^2 @ exp(sde_log_std)^2. `action_scale` / `action_bias` are buffers so
    they travel with the module into checkpoints and exported files.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: tuple[int, ...],
        action_low: torch.Tensor,
        action_high: torch.Tensor,
        obs_clip: float | None = None,
        sde_log_std_init: float | None = None,
    ) -> None:
        super().__init__()
        self.spec = ActorSpec(
            obs_dim,
            act_dim,
            tuple(hidden_sizes),
            tuple(action_low.tolist()),
            tuple(action_high.tolist()),
            obs_clip,
            sde=sde_log_std_init is not None,
        )
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        # The critics see observations through the actor's normalizer too (SAC.normalize).
        self.normalizer = nn.Identity() if obs_clip is None else ObsNormalizer(obs_dim, obs_clip)
        self.trunk = _mlp(obs_dim, hidden_sizes)
        # Mean and log-std heads share one matmul: rows [:act_dim] are the mean (under gSDE
        # the head is the mean alone).
        self.head = nn.Linear(hidden_sizes[-1], act_dim if self.spec.sde else 2 * act_dim)
        # One log-std per (feature, action): SB3's full_std. None without gSDE (no
        # state_dict entry), which TorchScript reads as a constant: the gSDE branches go.
        self.sde_log_std: nn.Parameter | None = None
        if sde_log_std_init is not None:
            self.sde_log_std = nn.Parameter(
                torch.full((hidden_sizes[-1], act_dim), float(sde_log_std_init))
            )
        # Attributes, not the module's constants: TorchScript (rl_core/policy/export.py) reads no
        # globals, and a frozen export folds attributes into constants.
        self.log_std_min, self.log_std_max = LOG_STD_MIN, LOG_STD_MAX
        self.sde_mean_clip, self.sde_variance_eps = SDE_MEAN_CLIP, SDE_VARIANCE_EPS
        self.register_buffer("action_scale", (action_high - action_low) / 2.0)
        self.register_buffer("action_bias", (action_high + action_low) / 2.0)

    @classmethod
    def from_spec(cls, spec: ActorSpec) -> Actor:
        """A freshly initialised actor of that shape (load weights into it)."""
        return cls(
            spec.obs_dim,
            spec.act_dim,
            tuple(spec.hidden_sizes),
            torch.tensor(spec.action_low, dtype=torch.float32),
            torch.tensor(spec.action_high, dtype=torch.float32),
            spec.obs_clip,
            0.0 if spec.sde else None,  # loaded weights replace it
        )

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The trunk's output for a raw observation: what the head (and gSDE's noise) reads."""
        return self.trunk(self.normalizer(obs))

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        """The pre-squash Gaussian's mean (clipped to +-SDE_MEAN_CLIP under gSDE): the head's
        mean rows alone, so an exported actor (rl_core/policy/export.py) computes no log-std."""
        act_dim = self.act_dim
        mean = F.linear(features, self.head.weight[:act_dim], self.head.bias[:act_dim])
        if self.sde_log_std is not None:
            mean = mean.clamp(-self.sde_mean_clip, self.sde_mean_clip)
        return mean

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-std of the pre-squash Gaussian at a raw observation (the head's
        log-std, clamped; under gSDE the state-dependent one of its variance)."""
        features = self.features(obs)
        if self.sde_log_std is not None:
            variance = features.square() @ (2.0 * self.sde_log_std).exp() + self.sde_variance_eps
            return self.mean(features), 0.5 * variance.log()
        mean, log_std = self.head(features).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def deterministic_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action tanh(mean), scaled to the env's bounds."""
        return self.to_env_action(torch.tanh(self.mean(self.features(obs))))

    def to_env_action(self, squashed: torch.Tensor) -> torch.Tensor:
        """Map an action from [-1, 1] to the env's [low, high]."""
        return squashed * self.action_scale + self.action_bias


class TwinQCritic(nn.Module):
    """`n_critics` Q-networks Q(s, a) evaluated together with batched matmuls.

    Weight `i` has shape (n_critics, in, out); initialisation matches `nn.Linear` per critic.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden_sizes: tuple[int, ...], n_critics: int = 2
    ) -> None:
        super().__init__()
        sizes = [obs_dim + act_dim, *hidden_sizes, 1]
        self.n_critics = n_critics
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default init
            self.weights.append(nn.Parameter(torch.empty(n_critics, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.empty(n_critics, 1, fan_out)))
            nn.init.uniform_(self.weights[-1], -bound, bound)
            nn.init.uniform_(self.biases[-1], -bound, bound)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q-values of shape (n_critics, batch)."""
        x = torch.cat([obs, action], dim=-1).expand(self.n_critics, -1, -1)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1], strict=True):
            x = torch.relu(torch.baddbmm(bias, x, weight))
        return torch.baddbmm(self.biases[-1], x, self.weights[-1]).squeeze(-1)
