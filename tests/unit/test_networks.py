import torch
from torch import nn

from rl_core.sac.networks import Actor, TwinQCritic


def _actor(obs_dim: int = 3, act_dim: int = 2) -> Actor:
    return Actor(obs_dim, act_dim, (32, 32), torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0]))


def test_the_deterministic_action_lies_in_the_env_bounds() -> None:
    actor = _actor()
    env_action = actor.deterministic_action(torch.randn(64, 3) * 10)
    assert env_action.shape == (64, 2)
    assert (env_action[:, 0].abs() <= 2.0).all()
    assert ((env_action[:, 1] >= 0.0) & (env_action[:, 1] <= 1.0)).all()


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
