"""The hand-written gradient step (rl_core/sac/sac_step.py) against the algorithm's definition.

The reference is rl_core/sac/sac_reference.py: SAC as autograd computes it, the modules' own
forward passes, torch.distributions for the squashed Gaussian's log-prob (under gSDE, SB3's
StateDependentNoiseDistribution written with them), `backward()` and torch.optim.Adam's
`step()`. In fp32 the compiled steps must land on the same parameters, Polyak targets,
log-alpha and Adam moments, update after update.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.distributions import Normal
from torch.distributions.transforms import TanhTransform
from torch.profiler import profile

from rl_core.common.config import SACConfig
from rl_core.sac import sac_step
from rl_core.sac.agent import SAC, _bf16_layers
from rl_core.sac.buffer import Batch
from rl_core.sac.networks import LOG_STD_MAX, LOG_STD_MIN, SDE_MEAN_CLIP


def _agent(obs_dim: int = 3, act_dim: int = 1, **overrides: object) -> SAC:
    config = SACConfig(
        **{
            "hidden_sizes": (16, 16),
            "matmul_precision": "ieee",
            "step_compiler": "torchscript",
            **overrides,
        }
    )
    torch.manual_seed(0)
    return SAC(config, obs_dim, act_dim, -2.0 * np.ones(act_dim), 2.0 * np.ones(act_dim))


def _batch(obs_dim: int = 3, act_dim: int = 1, n: int = 32) -> Batch:
    generator = torch.Generator().manual_seed(1)
    return Batch(
        obs=torch.randn(n, obs_dim, generator=generator) * 3.0,
        actions=torch.rand(n, act_dim, generator=generator) * 2 - 1,
        rewards=torch.randn(n, generator=generator),
        next_obs=torch.randn(n, obs_dim, generator=generator) * 3.0,
        terminated=(torch.rand(n, generator=generator) < 0.25).float(),
    )


def _state(agent: SAC) -> dict[str, torch.Tensor]:
    """Every tensor an update writes: parameters, targets, log-alpha, Adam moments."""
    tensors = {f"sac.{k}": v for k, v in agent.state_dict().items() if torch.is_tensor(v)}
    for part in ("actor", "critic", "critic_target"):
        tensors |= {f"{part}.{k}": v for k, v in agent.state_dict()[part].items()}
    for name in ("policy_optimizer", "critic_optimizer"):
        for index, state in getattr(agent, name).state_dict()["state"].items():
            tensors |= {f"{name}.{index}.{k}": v for k, v in state.items()}
    return tensors


@pytest.mark.parametrize(
    ("obs_dim", "act_dim", "overrides"),
    [
        (3, 1, {}),
        (5, 3, {"hidden_sizes": (32, 24, 16)}),
        (3, 2, {"ent_coef": 0.1}),
        (4, 1, {"normalize_obs": True}),
        (3, 1, {"step_compiler": "inductor"}),
        (3, 1, {"use_sde": True, "ent_coef": 0.1}),
        (5, 3, {"use_sde": True, "hidden_sizes": (32, 24, 16), "log_std_init": -1.0}),
        (4, 2, {"use_sde": True, "normalize_obs": True, "hidden_sizes": (16,)}),
        (3, 2, {"use_sde": True, "step_compiler": "inductor"}),
    ],
)
def test_the_step_equals_the_reference_on_the_same_networks(
    obs_dim: int, act_dim: int, overrides: dict[str, object]
) -> None:
    agent = _agent(obs_dim, act_dim, **overrides)
    if agent.config.normalize_obs:
        agent.actor.normalizer.update(torch.randn(100, obs_dim) * 4.0 + 2.0)
    reference = _agent(obs_dim, act_dim, **{**overrides, "step_compiler": "reference"})
    reference.load_state_dict(copy.deepcopy(agent.state_dict()))  # also the normalizer's
    batch = _batch(obs_dim, act_dim)
    # A second step also checks Adam's step counts and moments, at a new learning rate as a
    # schedule would set it: a compiled step takes it as data (one compiled in would be off).
    for seed, learning_rate in ((3, 1e-3), (4, 3e-4)):
        for sac in (agent, reference):
            sac.set_learning_rate(learning_rate)
        torch.manual_seed(seed)
        stats = agent.update(batch)
        torch.manual_seed(seed)  # the same noise, drawn in the same order
        reference_stats = reference.update(batch)
        assert stats.critic_loss.item() == pytest.approx(
            reference_stats.critic_loss.item(), rel=1e-5
        )
        assert stats.actor_loss.item() == pytest.approx(
            reference_stats.actor_loss.item(), rel=1e-5, abs=1e-6
        )
        assert stats.alpha.item() == pytest.approx(reference_stats.alpha.item(), rel=1e-6)
    expected = _state(reference)
    actual = _state(agent)
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        torch.testing.assert_close(actual[name], tensor, msg=name)
    assert not torch.equal(agent.critic.weights[0], _agent(obs_dim, act_dim).critic.weights[0])


def test_squashed_sample_is_a_tanh_gaussian_with_its_log_prob() -> None:
    generator = torch.Generator().manual_seed(0)
    head = torch.randn(64, 4, generator=generator) * 3.0  # some log-stds beyond the clamp
    noise = torch.randn(64, 2, generator=generator)
    settings = _agent(act_dim=2)._settings
    sample = sac_step.squashed_sample(head, noise, settings)
    mean, raw_log_std = head.split(2, -1)
    std = raw_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
    pre_tanh = mean + noise * std
    expected = Normal(mean, std).log_prob(pre_tanh) - TanhTransform().log_abs_det_jacobian(
        pre_tanh, torch.tanh(pre_tanh)
    )
    torch.testing.assert_close(sample.action, torch.tanh(pre_tanh))
    torch.testing.assert_close(sample.log_prob, expected.sum(-1), rtol=1e-5, atol=1e-4)
    assert sample.action.abs().max() <= 1.0
    free = (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX)
    assert torch.equal(sample.free.bool(), free)
    assert not free.all()


def test_state_dependent_sample_is_sb3s_gsde_with_its_log_prob() -> None:
    generator = torch.Generator().manual_seed(0)
    head = torch.randn(64, 2, generator=generator) * 3.0  # some means beyond the clip
    features = torch.relu(torch.randn(64, 8, generator=generator))
    sde_log_std = torch.randn(8, 2, generator=generator) - 1.0
    exploration = sde_log_std.exp() * torch.randn(8, 2, generator=generator)
    settings = _agent(act_dim=2, use_sde=True)._settings
    sample = sac_step.state_dependent_sample(head, features, exploration, sde_log_std, settings)
    mean = head.clamp(-SDE_MEAN_CLIP, SDE_MEAN_CLIP)
    pre_tanh = mean + features @ exploration
    std = (features.square() @ sde_log_std.exp().square() + 1e-6).sqrt()
    expected = Normal(mean, std).log_prob(pre_tanh) - TanhTransform().log_abs_det_jacobian(
        pre_tanh, torch.tanh(pre_tanh)
    )
    torch.testing.assert_close(sample.action, torch.tanh(pre_tanh))
    torch.testing.assert_close(sample.log_prob, expected.sum(-1), rtol=1e-5, atol=1e-4)
    free = head.abs() < SDE_MEAN_CLIP
    assert torch.equal(sample.free.bool(), free)
    assert not free.all()


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([3, 256, 256, 2], [False, True, False]),  # Pendulum's actor: narrow input stays fp32
        ([23, 64, 64, 1], [False, True, False]),
        ([105, 256, 256, 1], [True, True, False]),  # Ant's critic: a wide input goes bf16
        ([3, 32, 32, 1], [False, False, False]),
    ],
)
def test_bf16_runs_wide_hidden_layers_only_never_the_output(
    sizes: list[int], expected: list[bool]
) -> None:
    assert _bf16_layers(sizes, bf16=True) == expected
    assert _bf16_layers(sizes, bf16=False) == [False] * len(expected)


def test_bf16_forward_keeps_fp32_outputs_close_to_fp32() -> None:
    """Q-values and the Gaussian's parameters keep fp32's precision; hidden GEMMs drop."""
    torch.manual_seed(0)
    x = torch.randn(64, 80)
    params = []
    for fan_in, fan_out in ((80, 128), (128, 128), (128, 2)):
        params += [torch.randn(fan_out, fan_in) / fan_in**0.5, torch.randn(fan_out) * 0.1]
    bf16 = [True, True, False]
    rounded = sac_step.mlp_forward(x, sac_step.compute_params(params, bf16), bf16)
    exact = sac_step.mlp_forward(x, params, [False] * 3)
    assert [a.dtype for a in rounded] == [torch.bfloat16] * 2 + [torch.float32] * 2
    assert not torch.equal(rounded[-1], exact[-1])  # the hidden layers did run in bf16
    torch.testing.assert_close(rounded[-1], exact[-1], rtol=0.05, atol=0.02)


def test_a_bf16_step_moves_the_networks_as_an_fp32_step_does() -> None:
    """Same agent, same batch and noise: the bf16 step's parameter changes agree with fp32's
    in direction (a wrong gradient in a bf16-only branch would not)."""
    batch = _batch()
    moves = {}
    for precision in ("ieee", "bf16"):
        agent = _agent(hidden_sizes=(128, 128), matmul_precision=precision)
        trained = agent.step_state.policy_adam.params + agent.step_state.critic
        before = [p.detach().clone() for p in trained]
        torch.manual_seed(3)
        agent.update(batch)
        after = trained
        moves[precision] = torch.cat(
            [(a - b).flatten() for a, b in zip(after, before, strict=True)]
        )
    cosine = torch.nn.functional.cosine_similarity(moves["ieee"], moves["bf16"], dim=0)
    assert cosine > 0.9, cosine


def test_inductor_and_torchscript_take_the_same_bf16_step() -> None:
    """The compilers run one function on the same noise (the AOTInductor library draws torch's
    own random numbers): with bf16 layers, a fixed alpha and normalized observations, the gradients'
    moments agree to bf16's rounding (inductor may round a fused activation differently, so
    not bit for bit) and the networks move the same way."""
    batch = _batch(obs_dim=4, act_dim=2)
    shape: dict[str, object] = {"obs_dim": 4, "act_dim": 2, "hidden_sizes": (128, 128)}
    initial = _state(_agent(**shape))
    states = {}
    for compiler in ("torchscript", "inductor"):
        agent = _agent(
            **shape,
            matmul_precision="bf16",
            ent_coef=0.2,
            normalize_obs=True,
            step_compiler=compiler,
        )
        agent.actor.normalizer.update(torch.randn(100, 4, generator=torch.Generator()) + 1.0)
        for seed in (3, 4):
            torch.manual_seed(seed)
            agent.update(batch)
        states[compiler] = _state(agent)
    for name, expected in states["torchscript"].items():
        if name.endswith(("exp_avg", "exp_avg_sq")):  # a wrong gradient is off by ~100%
            scale = expected.abs().max().item()
            torch.testing.assert_close(
                states["inductor"][name], expected, rtol=0.0, atol=0.1 * scale, msg=name
            )
    weights = [
        name for name in initial if name.startswith(("actor.trunk", "actor.head", "critic."))
    ]
    moves = {
        compiler: torch.cat([(state[name] - initial[name]).flatten() for name in weights])
        for compiler, state in states.items()
    }
    cosine = torch.nn.functional.cosine_similarity(moves["torchscript"], moves["inductor"], dim=0)
    assert cosine > 0.99, cosine
    assert moves["inductor"].abs().max() > 0


def test_profiles_name_the_steps_phases() -> None:
    """benchmarks/profile_update.py splits an update by these names."""
    agent = _agent()
    with profile() as prof:
        agent.update(_batch())
    names = {event.name for event in prof.events()}
    assert {sac_step.CRITIC_PHASE, sac_step.POLICY_PHASE, sac_step.TARGET_PHASE} <= names


def test_explore_samples_the_actors_squashed_gaussian() -> None:
    """The compiled exploration action is tanh(mean + noise * std) of the actor module, on
    the raw observation (through the normalizer when there is one)."""
    agent = _agent(obs_dim=4, act_dim=2, normalize_obs=True)
    agent.actor.normalizer.update(torch.randn(100, 4) * 4.0 + 2.0)
    obs = np.array([1.0, -2.0, 3.0, 0.5], dtype=np.float32)
    torch.manual_seed(5)
    action = agent.explore(obs)
    torch.manual_seed(5)
    with torch.no_grad():
        mean, log_std = agent.actor(torch.as_tensor(obs)[None])
        expected = torch.tanh(mean + torch.randn_like(mean) * log_std.exp())[0]
    assert action.shape == (2,)
    torch.testing.assert_close(torch.as_tensor(action), expected)


def test_gsde_explores_with_one_noise_matrix_until_it_is_redrawn() -> None:
    """Under gSDE the exploration action is tanh(mean + features @ E): the same observation
    gives the same action until E is drawn anew (temporally consistent exploration)."""
    agent = _agent(obs_dim=3, act_dim=2, use_sde=True, log_std_init=0.0)
    obs = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    agent.reset_exploration()
    first = agent.explore(obs)
    np.testing.assert_array_equal(agent.explore(obs), first)
    with torch.no_grad():
        features = agent.actor.features(torch.as_tensor(obs)[None])
        mean = agent.actor.mean(features)
        expected = torch.tanh(mean + features @ agent.exploration_matrix)[0]
    torch.testing.assert_close(torch.as_tensor(first), expected)
    assert not torch.allclose(expected, torch.tanh(mean)[0])  # there is noise
    agent.reset_exploration()
    assert not np.array_equal(agent.explore(obs), first)


def test_the_gsde_actors_log_std_is_that_of_its_exploration_noise() -> None:
    """`Actor.forward` under gSDE gives the state-dependent log-std: the spread of
    features @ E over many noise matrices E at one observation."""
    agent = _agent(obs_dim=3, act_dim=2, use_sde=True, log_std_init=-0.5)
    obs = torch.tensor([[1.0, -2.0, 3.0]])
    with torch.no_grad():
        features = agent.actor.features(obs)
        _, log_std = agent.actor(obs)
    torch.manual_seed(7)
    noise = []
    for _ in range(4000):
        agent.reset_exploration()
        noise.append(features @ agent.exploration_matrix)
    spread = torch.cat(noise).std(0)
    torch.testing.assert_close(spread.log(), log_std[0], rtol=0.0, atol=0.05)
