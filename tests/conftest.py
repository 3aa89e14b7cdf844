"""Shared fixtures: Airflow configured for tests, a clean MLflow environment per test, and a
real local MLflow store.

Airflow reads its configuration once, at import, so the test Airflow home (a temporary folder
with a SQLite metadata DB, this repo's dags/ and plugins/) is set here, before any test module
can import airflow.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from _pytest.nodeid import NodeId

# pytest loads this file as `conftest`; test modules import helpers from `tests.conftest`. One
# module under both names, so the folders and environment below are made once per session.
sys.modules.setdefault("tests.conftest", sys.modules[__name__])

REPO = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="rlops-test-airflow-"))
AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    # `airflow dags test` fails a successful run of a DAG with a deadline (apache/airflow#73428):
    # off where DAGs run without a scheduler; test_alert_wiring turns them on to check them.
    "RLOPS_DEADLINE_ALERTS": "off",
}
os.environ.update(AIRFLOW_ENV)
# The suite runs two pytest workers on two cores, so two trainings (or a training and a busy
# service) often share them. torch's OpenMP threads spin 300,000 times at each barrier before
# sleeping (libgomp's default), and with a second process on the cores the spinning thread
# holds the core its partner needs: two 5k-step Pendulum trainings at once took 260 s instead of
# 23 s (AMD EPYC, 2 cores). 1,000 spins keep one training at its speed and two at ~40 s. Every
# process the suite starts inherits it (libgomp reads it when torch loads it, after this).
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
# Compiled training steps (rl_core/sac/aot_step.py) in a cache of the session's own, shared by its
# tests and the pipelines they run, not the developer's ~/.cache/rlops. Under pytest-xdist the
# controller makes it and its workers inherit it (a step compiles once per run, not per worker);
# whoever made it removes it.
SHARED_STEP_CACHE = "RLOPS_TEST_STEP_CACHE"
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get(SHARED_STEP_CACHE):
    STEP_CACHE, OWN_STEP_CACHE = Path(os.environ[SHARED_STEP_CACHE]), False
else:
    STEP_CACHE, OWN_STEP_CACHE = Path(tempfile.mkdtemp(prefix="rlops-test-cache-")), True
    os.environ[SHARED_STEP_CACHE] = str(STEP_CACHE)
os.environ["RLOPS_CACHE_DIR"] = str(STEP_CACHE)

MLFLOW_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_RUN_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session's Airflow home and step cache go with it (after its fixtures, the stacks
    among them, have stopped): each session would otherwise leave ~10 MiB in /tmp."""
    for folder in (AIRFLOW_HOME, STEP_CACHE) if OWN_STEP_CACHE else (AIRFLOW_HOME,):
        shutil.rmtree(folder, ignore_errors=True)


STACK_FIXTURES = ("stack", "celery_stack")
"""Session-scoped stacks (tests/integration/conftest.py): every test of one stack goes to the
same pytest-xdist worker (`--dist loadgroup`), so each stack starts once per run."""


def _xdist_group(item: pytest.Item) -> str | None:
    """The pytest-xdist worker group an expensive shared fixture ties a test to: its stack, or
    its module when a module-scoped fixture (e.g. one pipeline run) serves the module's tests.
    Other tests go to whichever worker is free."""
    fixtures = getattr(item, "_fixtureinfo", None)
    used = fixtures.name2fixturedefs if fixtures else {}
    for stack in STACK_FIXTURES:
        if stack in used and used[stack][-1].scope == "session":  # a module may bring its own
            return stack
    if any(d.scope in ("package", "module", "class") for defs in used.values() for d in defs):
        return item.nodeid.split("::", 1)[0]
    return None


def _xdist_order(item: pytest.Item) -> int:
    """Longest first under pytest-xdist (a worker's share is a queue): the stacks' tests, then
    the slow ones, then the rest, which fill the gaps."""
    if item.get_closest_marker("integration"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


def artifact_file(name: str) -> Path:
    """Where a test keeps something for a person to look at (screenshots, received alerts):
    `test-artifacts/` or $RLOPS_TEST_ARTIFACTS, which CI can keep."""
    folder = Path(os.environ.get("RLOPS_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In one process, integration tests last: their session-scoped stack then stops right after
    them. Under pytest-xdist (the workers collect), longest first (see _xdist_order), and each
    test of a group named by its id, which is how `--dist loadgroup` sends a group to one
    worker. pytest-xdist 3.8 names them by setting `item._nodeid`, which pytest 9.2 no longer
    reads (a node's id is `item._id`): done here instead, for the groups of _xdist_group."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("integration") is not None)
        return
    items.sort(key=_xdist_order)
    if config.getvalue("loadgroup"):
        for item in items:
            if (group := _xdist_group(item)) and "@" not in item.nodeid:
                item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.fixture(autouse=True)
def _no_ambient_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with MLflow unconfigured, whatever the developer's shell exports."""
    for name in MLFLOW_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")


RENDERING_ENV = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER")
"""Rendering backends `rl_core.evaluation.video` (and MuJoCo) choose through the environment."""


@pytest.fixture(autouse=True)
def _rendering_choices_restored() -> Iterator[None]:
    """A backend a test's video chose does not outlive the test."""
    before = {name: os.environ.get(name) for name in RENDERING_ENV}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def env_without_rendering() -> Iterator[str]:
    """The id of an env SAC can act in (Box observations and actions, five-step episodes)
    that offers no render mode at all, registered for the test."""
    import gymnasium as gym
    import numpy as np

    class Blind(gym.Env):
        metadata: ClassVar[dict[str, Any]] = {"render_modes": []}
        observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def __init__(self, render_mode: str | None = None) -> None:
            self.render_mode = render_mode
            self.steps = 0

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
            super().reset(seed=seed)
            self.steps = 0
            return np.zeros(3, np.float32), {}

        def step(self, action: np.ndarray) -> tuple:
            self.steps += 1
            reward = -float(np.abs(action).sum())
            return np.zeros(3, np.float32), reward, self.steps >= 5, False, {}

    gym.register("Blind-v0", Blind, max_episode_steps=5)
    yield "Blind-v0"
    gym.registry.pop("Blind-v0", None)


@pytest.fixture(scope="session")
def _mlflow_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite DB with every migration applied, made once per session."""
    db = tmp_path_factory.mktemp("mlflow-schema") / "mlflow.db"
    code = (
        "from mlflow import MlflowClient\n"
        f"MlflowClient(tracking_uri='sqlite:///{db}').search_registered_models()\n"
    )
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return db


@pytest.fixture
def mlflow_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _mlflow_schema: Path
) -> Iterator[str]:
    """A real MLflow tracking + registry store: a temporary SQLite file and artifact folder.

    The file starts as a copy of the migrated schema (migrating takes seconds per test).
    MLflow's default artifact root (./mlruns) lands in tmp_path.
    """
    shutil.copyfile(_mlflow_schema, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) stays in tmp
    yield uri


def validate_trigger(dag: object, conf: dict) -> None:
    """Check conf against the DAG's Params as a trigger would (ParamValidationError if bad)."""
    params = copy.deepcopy(dag.params)
    params.update(conf)
    params.validate()


def airflow_dags_test(
    dag_id: str,
    env: dict[str, str],
    conf: dict,
    logical_date: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """`airflow dags test <dag_id> [logical_date] -c <conf>`: Airflow runs every task; rc 0
    iff it succeeded. `timeout` only guards against a hang: give a long run room to be slow
    on a busy machine."""
    when = [logical_date] if logical_date else []
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id, *when, "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def airflow_db() -> dict[str, str]:
    """A migrated Airflow metadata DB (SQLite) with the pipeline DAG serialized.

    Returns the Airflow variables a subprocess needs on top of its environment.
    """
    env = {**os.environ, **AIRFLOW_ENV}
    airflow = [sys.executable, "-m", "airflow"]
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run(
            [*airflow, *command], env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return dict(AIRFLOW_ENV)


# Hypothesis in CI: the same examples every run (derandomized from each test's own source), so a
# failure found once fails again on the next run instead of hiding behind a new random draw;
# print_blob prints the `@reproduce_failure` line that replays it locally. No database: a CI
# checkout would neither keep nor reuse it. Outside CI the default profile explores new examples.
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    hypothesis_settings.load_profile("ci")
