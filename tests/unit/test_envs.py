"""Any env a user can name: registered ids, "module:EnvId" ids, entry points, packages and
kwargs; and one clear error, naming the env, for every way it can be unusable."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rl_core.envs.env_guard import ALLOW_FILE_KWARGS_ENV, ALLOWED_MODULES_ENV
from rl_core.envs.spec import (
    EnvError,
    EnvSpec,
    describe_env,
    make_env,
    register_entry_point_envs,
    to_env_action,
)


@pytest.fixture
def env_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module that registers `Tilted-v0` (Pendulum with another gravity) and
    `Picture-v0` (image observations) when imported; its name."""
    (tmp_path / "my_envs.py").write_text(
        textwrap.dedent(
            """
            import gymnasium as gym
            import numpy as np
            from gymnasium import spaces

            class Picture(gym.Env):
                observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)
                action_space = spaces.Box(-1, 1, (1,), np.float32)

            gym.register("Tilted-v0", "gymnasium.envs.classic_control:PendulumEnv",
                         kwargs={"g": 3.0}, max_episode_steps=50)
            gym.register("Picture-v0", Picture)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(ALLOWED_MODULES_ENV, "my_envs")  # no entry point offers it
    yield "my_envs"
    for env_id in ("Tilted-v0", "Picture-v0"):
        gym.registry.pop(env_id, None)
    sys.modules.pop("my_envs", None)


def test_unknown_env_id_names_the_closest_registered_ones() -> None:
    with pytest.raises(EnvError, match=r"unknown env id 'Pendulam-v1'; closest registered: "):
        make_env("Pendulam-v1")
    with pytest.raises(EnvError, match="Pendulum-v1"):
        make_env("Pendulam-v1")


def test_a_package_that_is_not_installed_is_named(monkeypatch) -> None:
    monkeypatch.setenv(ALLOWED_MODULES_ENV, "no_such_envs_pkg, nowhere_mod")
    spec = EnvSpec("Pendulum-v1", packages=("no_such_envs_pkg",))
    with pytest.raises(EnvError, match=r"env_packages: cannot import 'no_such_envs_pkg'"):
        make_env(spec)
    with pytest.raises(EnvError, match=r"the module before ':': cannot import 'nowhere_mod'"):
        make_env("nowhere_mod:Foo-v0")


def test_packages_and_module_ids_register_envs(env_module: str) -> None:
    env = make_env(f"{env_module}:Tilted-v0")
    assert env.unwrapped.g == 3.0
    env.close()
    summary = describe_env(EnvSpec("Tilted-v0", packages=(env_module,), kwargs={"g": 5.0}))
    assert (summary.obs_dim, summary.act_dim, summary.max_episode_steps) == (3, 1, 50)
    assert summary.action_low == [-2.0]


def test_kwargs_reach_the_env_and_bad_ones_quote_its_own_error() -> None:
    env = make_env(EnvSpec("Pendulum-v1", kwargs={"g": 1.5}))
    assert env.unwrapped.g == 1.5
    env.close()
    with pytest.raises(
        EnvError,
        match=r"env 'Pendulum-v1' could not be built with env_kwargs \{\"gravity\": 1\}: "
        r"TypeError: .*unexpected keyword argument 'gravity'",
    ):
        make_env(EnvSpec("Pendulum-v1", kwargs={"gravity": 1}))


ALLOWED_TEXT = (
    "allowed: rlops_example_envs (rlops.envs entry points); RLOPS_ALLOWED_ENV_MODULES "
    "(comma-separated, on the workers) adds others"
)


@pytest.mark.parametrize(
    ("spec", "field", "module"),
    [
        (EnvSpec("Pendulum-v1", packages=("os",)), "env_packages[0]", "os"),
        (
            EnvSpec("Pendulum-v1", packages=("rlops_example_envs", "subprocess")),
            "env_packages[1]",
            "subprocess",
        ),
        (EnvSpec("Pendulum-v1", packages=("builtins",)), "env_packages[0]", "builtins"),
        (
            EnvSpec("Pendulum-v1", packages=("no_such_envs_pkg",)),
            "env_packages[0]",
            "no_such_envs_pkg",
        ),
        (EnvSpec("os:Foo-v0"), "env_id", "os"),
        (EnvSpec("os.path:Foo-v0"), "env_id", "os.path"),
        # a prefix of an allowed name is another module; __main__ would run it as a program
        (
            EnvSpec("Pendulum-v1", packages=("rlops_example_envs_evil",)),
            "env_packages[0]",
            "rlops_example_envs_evil",
        ),
        (
            EnvSpec("Pendulum-v1", packages=("rlops_example_envs.__main__",)),
            "env_packages[0]",
            "rlops_example_envs.__main__",
        ),
    ],
)
def test_a_module_outside_the_allowlist_is_refused_naming_the_field(
    spec: EnvSpec, field: str, module: str
) -> None:
    with pytest.raises(EnvError) as refused:
        make_env(spec)
    assert str(refused.value) == (
        f"env {spec.id!r}: {field}: module {module!r} is not allowed to be imported by a run's "
        f"conf; {ALLOWED_TEXT}"
    )


def test_a_refused_module_is_never_imported(env_module: str, monkeypatch) -> None:
    """Refused before the import: the module's code (which registers envs) never runs."""
    monkeypatch.delenv(ALLOWED_MODULES_ENV)
    for spec in (EnvSpec("Tilted-v0", packages=(env_module,)), EnvSpec(f"{env_module}:Tilted-v0")):
        with pytest.raises(EnvError, match=f"module '{env_module}' is not allowed"):
            make_env(spec)
    assert env_module not in sys.modules
    assert "Tilted-v0" not in gym.registry


def test_the_env_var_extends_the_allowlist_with_sub_modules(env_module: str, monkeypatch) -> None:
    monkeypatch.setenv(ALLOWED_MODULES_ENV, f" other_pkg ,{env_module}")
    make_env(EnvSpec("Tilted-v0", packages=(env_module,))).close()
    with pytest.raises(EnvError) as refused:  # a sub-module is allowed: the import is tried
        make_env(EnvSpec("Tilted-v0", packages=(f"{env_module}.missing",)))
    assert f"cannot import '{env_module}.missing'" in str(refused.value)
    with pytest.raises(EnvError) as refused:
        make_env(EnvSpec("Pendulum-v1", packages=("os",)))
    assert (
        f"allowed: rlops_example_envs (rlops.envs entry points); {env_module}, other_pkg "
        f"(RLOPS_ALLOWED_ENV_MODULES)" in str(refused.value)
    )


def test_a_malformed_env_var_is_refused_naming_it(monkeypatch) -> None:
    monkeypatch.setenv(ALLOWED_MODULES_ENV, "good_pkg,*")
    with pytest.raises(ValueError, match=r"RLOPS_ALLOWED_ENV_MODULES: '\*' is not a dotted"):
        make_env("Pendulum-v1")


def test_the_example_package_and_its_modules_are_allowed() -> None:
    """Its entry point allows the package: named in env_packages, a sub-module, or before ':'."""
    for spec in (
        EnvSpec("PointReach-v0", packages=("rlops_example_envs",)),
        EnvSpec("PointReach-v0", packages=("rlops_example_envs.point_reach",)),
        EnvSpec("rlops_example_envs:PointReach-v0"),
        EnvSpec("Pendulum-v1"),  # gymnasium's own ids need no module
    ):
        make_env(spec).close()


@pytest.mark.parametrize("name", ["xml_file", "model_path", "log_dir", "path", "asset_filename"])
def test_a_kwarg_naming_a_file_is_refused_unless_the_workers_allow_it(
    monkeypatch, name: str
) -> None:
    spec = EnvSpec("Pendulum-v1", kwargs={"g": 9.0, name: "/etc/shadow"})
    with pytest.raises(EnvError) as refused:
        make_env(spec)
    assert str(refused.value).startswith(
        f"env 'Pendulum-v1': env_kwargs.{name}: a keyword argument naming a file"
    )
    assert f"set {ALLOW_FILE_KWARGS_ENV}=1 on the workers" in str(refused.value)
    monkeypatch.setenv(ALLOW_FILE_KWARGS_ENV, "1")
    with pytest.raises(EnvError, match=f"unexpected keyword argument '{name}'"):
        make_env(spec)  # let through: Pendulum's own constructor is what refuses it now


def test_discrete_action_space_is_refused_with_what_was_found() -> None:
    with pytest.raises(EnvError, match=r"'CartPole-v1' has action space Discrete\(2\)"):
        make_env("CartPole-v1")


def test_image_observations_are_refused_as_not_flat(env_module: str) -> None:
    with pytest.raises(
        EnvError, match=r"'Picture-v0' has observation space Box\(0, 255, \(8, 8, 3\)"
    ):
        make_env(EnvSpec("Picture-v0", packages=(env_module,)))


def test_offered_envs_come_from_package_metadata_without_importing(monkeypatch) -> None:
    from importlib.metadata import EntryPoint

    from rl_core.envs import env_plugins

    declared = [EntryPoint("Mine-v0", "no_such_module.envs:Mine", env_plugins.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(
        env_plugins,
        "entry_points",
        lambda group: declared if group == env_plugins.ENTRY_POINT_GROUP else [],
    )
    assert env_plugins.offered_envs() == {"Mine-v0": "no_such_module.envs:Mine"}


def test_the_trigger_form_proposes_the_installed_envs() -> None:
    from rlops_airflow.params import pipeline_params

    proposed = pipeline_params()["env_id"].schema["examples"]
    # PointReach-v0: the example package is installed
    assert proposed == ["Pendulum-v1", "MountainCarContinuous-v0", "PointReach-v0"]


def test_entry_point_envs_are_registered_by_name() -> None:
    """The example package (installed by scripts/bootstrap.sh) offers PointReach-v0."""
    assert "PointReach-v0" in register_entry_point_envs()
    summary = describe_env("PointReach-v0")
    assert (summary.obs_dim, summary.act_dim) == (6, 2)
    env = make_env(EnvSpec("PointReach-v0", kwargs={"max_steps": 3}))
    env.reset(seed=0)
    assert [env.step(np.zeros(2))[3] for _ in range(3)] == [False, False, True]
    env.close()


def test_spec_round_trips_and_reads_as_text() -> None:
    spec = EnvSpec("Pendulum-v1", ("a.b",), {"g": 9.0})
    assert EnvSpec.from_dict(spec.as_dict()) == spec
    assert str(spec) == "Pendulum-v1 (packages ['a.b'], kwargs {\"g\": 9.0})"
    assert str(EnvSpec.of("Pendulum-v1")) == "Pendulum-v1"


def test_continuous_env_is_accepted() -> None:
    env = make_env("MountainCarContinuous-v0")
    assert isinstance(env.action_space, spaces.Box)
    env.close()


def test_to_env_action_maps_unit_interval_to_bounds() -> None:
    space = spaces.Box(low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 1.0], np.float32))
    squashed = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(
        to_env_action(squashed, space), [[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0]]
    )
