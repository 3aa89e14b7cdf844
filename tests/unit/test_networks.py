import torch
from torch import nn
from torch.distributions import Normal
from torch.distributions.transforms import TanhTransform

from rl_core.networks import Actor, TwinQCritic


def _actor(obs_dim: int = 3, act_dim: int = 2) -> Actor:
    return Actor(obs_dim, act_dim, (32, 32), torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0]))


def test_actor_shapes_and_bounds() -> None:
    actor = _actor()
    obs = torch.randn(64, 3) * 10
    action, log_prob = actor.sample(obs)
    assert action.shape == (64, 2)
    assert log_prob.shape == (64,)
    assert action.abs().max() <= 1.0
    env_action = actor.deterministic_action(obs)
    assert (env_action[:, 0].abs() <= 2.0).all()
    assert ((env_action[:, 1] >= 0.0) & (env_action[:, 1] <= 1.0)).all()


def test_log_prob_matches_torch_distributions() -> None:
    actor = _actor()
    obs = torch.randn(128, 3)
    torch.manual_seed(0)
    _, log_prob = actor.sample(obs)
    torch.manual_seed(0)
    mean, log_std = actor(obs)
    pre_tanh = mean + torch.randn_like(mean) * log_std.exp()
    expected = Normal(mean, log_std.exp()).log_prob(
        pre_tanh
    ) - TanhTransform().log_abs_det_jacobian(pre_tanh, torch.tanh(pre_tanh))
    torch.testing.assert_close(log_prob, expected.sum(-1), rtol=1e-5, atol=1e-4)


def test_sample_is_reparameterised() -> None:
    actor = _actor()
    action, log_prob = actor.sample(torch.randn(8, 3))
    (action.sum() + log_prob.sum()).backward()
    assert all(p.grad is not None for p in actor.trunk.parameters())


def test_twin_critic_equals_two_separate_mlps() -> None:
    critic = TwinQCritic(obs_dim=3, act_dim=2, hidden_sizes=(16, 16))
    obs, act = torch.randn(10, 3), torch.randn(10, 2)
    q = critic(obs, act)
    assert q.shape == (2, 10)
    for i in range(2):
        layers = []
        for w, b in zip(critic.weights, critic.biases, strict=True):
            linear = nn.Linear(w.shape[1], w.shape[2])
            linear.weight.data = w[i].T.detach()
            linear.bias.data = b[i, 0].detach()
            layers += [linear, nn.ReLU()]
        reference = nn.Sequential(*layers[:-1])
        torch.testing.assert_close(q[i], reference(torch.cat([obs, act], -1)).squeeze(-1))


def test_twin_critics_are_initialised_independently() -> None:
    critic = TwinQCritic(3, 1, (16, 16))
    assert not torch.equal(critic.weights[0][0], critic.weights[0][1])
