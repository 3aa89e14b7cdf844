from rl_core.common.config import SACConfig
from rl_core.evaluation.episodes import evaluate
from rl_core.run.training import train


def _eval_returns(seed: int) -> list[float]:
    cfg = SACConfig(
        total_timesteps=800,
        hidden_sizes=(64, 64),
        batch_size=64,
        learning_starts=100,
        seed=seed,
        eval_seeds=(1000, 1001, 1002),
    )
    agent = train(cfg, show_progress=False).agent
    return evaluate(agent.act, cfg.env_id, cfg.eval_seeds).returns


def test_same_seed_gives_bit_identical_evaluation() -> None:
    assert _eval_returns(seed=11) == _eval_returns(seed=11)


def test_different_seeds_give_different_runs() -> None:
    assert _eval_returns(seed=11) != _eval_returns(seed=12)


def test_evaluation_is_deterministic_per_env_seed() -> None:
    def zero_torque(obs):
        return obs[:1] * 0.0

    first = evaluate(zero_torque, "Pendulum-v1", [1000, 1001])
    again = evaluate(zero_torque, "Pendulum-v1", [1000, 1001])
    assert first == again
    assert first.returns[0] != first.returns[1]  # the seed sets the start state
    assert first.seeds == [1000, 1001]
    assert first.mean == sum(first.returns) / 2
