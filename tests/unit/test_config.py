import json

import pytest

from rl_core.common.config import ConfigError, SACConfig, load_config


def test_defaults_are_rl_zoo_pendulum() -> None:
    cfg = SACConfig()
    assert cfg.env_id == "Pendulum-v1"
    assert cfg.hidden_sizes == (256, 256)
    assert (cfg.batch_size, cfg.learning_rate, cfg.buffer_size) == (256, 1e-3, 1_000_000)
    assert (cfg.learning_starts, cfg.gamma, cfg.tau) == (100, 0.99, 0.005)
    assert (cfg.train_freq, cfg.gradient_steps, cfg.ent_coef) == (1, 1, "auto")
    assert cfg.eval_seeds == tuple(range(1000, 1010))


def test_yaml_file_plus_overrides(tmp_path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("total_timesteps: 5000\nhidden_sizes: [64, 64]\nseed: 3\n")
    cfg = load_config(path, ["seed=7", "ent_coef=0.1", "eval_seeds=[1, 2]"])
    assert cfg.total_timesteps == 5000
    assert cfg.hidden_sizes == (64, 64)
    assert cfg.seed == 7  # the override wins over the file
    assert cfg.ent_coef == 0.1
    assert cfg.eval_seeds == (1, 2)


def test_json_file(tmp_path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"batch_size": 64, "env_id": "MountainCarContinuous-v0"}))
    cfg = load_config(path)
    assert (cfg.batch_size, cfg.env_id) == (64, "MountainCarContinuous-v0")


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("batch_size=0", "batch_size", "greater than or equal to 1"),
        ("gamma=1.5", "gamma", "less than or equal to 1"),
        ("ent_coef=banana", "ent_coef", "auto"),
        ("ent_coef=-1", "ent_coef", "positive"),
        ("matmul_precision=fp8", "matmul_precision", "'auto', 'bf16' or 'ieee'"),
        ("hidden_sizes=[]", "hidden_sizes", "at least 1 item"),
        ("total_timesteps=ten", "total_timesteps", "valid integer"),
    ],
)
def test_bad_value_names_field_value_and_allowed(override, field, allowed) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    message = str(err.value)
    assert field in message
    assert repr(override.split("=", 1)[1]) in message or override.split("=", 1)[1] in message
    assert allowed in message


def test_an_unknown_field_gets_the_closest_known_name() -> None:
    with pytest.raises(
        ConfigError, match=r"bach_size: unknown parameter; did you mean batch_size\?"
    ):
        load_config(overrides=["bach_size=3"])


def test_an_unknown_field_far_from_any_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"zzz: unknown parameter; known: env_id, .*batch_size"):
        load_config(overrides=["zzz=3"])


def test_malformed_override() -> None:
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(overrides=["batch_size"])


def test_config_hash_is_stable_and_sensitive() -> None:
    assert SACConfig().config_hash() == SACConfig().config_hash()
    assert SACConfig(seed=1).config_hash() != SACConfig().config_hash()


def test_a_module_or_file_kwarg_a_conf_may_not_ask_is_refused_at_the_door() -> None:
    """`rlops train --set` and config files go through `build_config`: the run stops before
    the env (rl_core/envs/spec.py refuses them too) or anything else is built."""
    with pytest.raises(ConfigError, match=r"env_packages\[0\]: module 'subprocess' is not allowed"):
        load_config(overrides=["env_packages=[subprocess]"])
    with pytest.raises(ConfigError, match=r"env_id: module 'os' is not allowed"):
        load_config(overrides=["env_id=os:Foo-v0"])
    with pytest.raises(ConfigError, match=r"env_kwargs.model_path: a keyword argument naming"):
        load_config(overrides=['env_kwargs={"model_path": "/root/.ssh/id_rsa"}'])
