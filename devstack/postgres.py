"""A disposable PostgreSQL cluster on 127.0.0.1, with the databases of the compose stack.

PostgreSQL refuses to run as root: when we are root, initdb and pg_ctl run as the `postgres` OS
user (runuser), which must own the cluster directory and be able to reach it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Literal

import psutil

from devstack.processes import StackError, log_tail

REPO = Path(__file__).resolve().parents[1]
# The compose file's init script: devstack creates the databases and roles with the same SQL.
INIT_SCRIPT = REPO / "docker" / "postgres" / "initdb" / "10-create-databases.sh"
APP_DATABASES = ("airflow", "mlflow", "optuna")
"""One database and login role each (Optuna: the tuning DAG's studies)."""

# Appended to postgresql.conf. TCP on loopback only (no Unix socket, so no socket directory to
# share); durability is off because the cluster is thrown away at the next `up` anyway, and
# fsyncs dominate Airflow's and MLflow's schema migrations on a small box.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
"""

AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


def bin_dir() -> Path:
    """Where initdb, pg_ctl, psql and pg_isready of one PostgreSQL version live side by side.

    pg_ctl on PATH first; else Debian's layout, where `apt-get install postgresql` puts the
    server binaries in /usr/lib/postgresql/<major>/bin, off PATH.
    """
    on_path = shutil.which("pg_ctl")
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
    )
    found = Path(on_path).resolve() if on_path else (debian[-1] if debian else None)
    if found is None:
        raise StackError("PostgreSQL server binaries (initdb, pg_ctl) not found: install them")
    return found.parent


class PostgresCluster:
    """initdb / start / stop of one cluster under `root` (data/ and postgres.log)."""

    def __init__(self, root: Path, port: int, superuser_password: str) -> None:
        self.root = root
        self.port = port
        self.superuser_password = superuser_password
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.bin = bin_dir()
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def _run(self, *argv: str) -> None:
        """Run a server tool as the cluster's owner, from a directory that user can read."""
        prefix = AS_POSTGRES if self._owner else []
        done = subprocess.run(
            [*prefix, str(self.bin / argv[0]), *argv[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise StackError(
                f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}\n{log_tail(self.log)}"
            )

    def _chown(self, path: Path) -> None:
        if self._owner:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def init(self) -> None:
        """A new, empty cluster with a password-protected superuser `postgres`."""
        self.root.mkdir(mode=0o700, parents=True)
        self._chown(self.root)
        if self._owner and subprocess.run([*AS_POSTGRES, "test", "-w", str(self.root)]).returncode:
            raise StackError(
                f"the postgres OS user cannot reach {self.root}: pick a state dir whose parent "
                "directories it may enter (e.g. under /tmp or the repository's .local/)"
            )
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.superuser_password)
        self._chown(pwfile)
        try:
            self._run(
                "initdb",
                "--pgdata",
                str(self.data),
                "--username",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            )
        finally:
            pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(SETTINGS.format(port=self.port))

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run("pg_ctl", "--pgdata", str(self.data), "--log", str(self.log), "--wait", "start")

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """Stop the server; nothing to do if it is not running. `fast` rolls back open
        transactions; `immediate` aborts every process at once, as a crash (recovery at start)."""
        if self.pid() is not None:
            self._run("pg_ctl", "--pgdata", str(self.data), f"--mode={mode}", "--wait", "stop")

    def pid(self) -> int | None:
        """The running postmaster's PID (None when stopped, even if a stale pid file remains)."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            return pid if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE else None
        except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
            return None

    def is_ready(self) -> bool:
        """pg_isready: the server accepts connections on its port."""
        argv = [str(self.bin / "pg_isready"), "--host=127.0.0.1", f"--port={self.port}"]
        return subprocess.run(argv, capture_output=True).returncode == 0

    def create_app_databases(self, passwords: dict[str, str]) -> None:
        """Run the compose stack's init script: the `APP_DATABASES`, one role each."""
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGPASSWORD": self.superuser_password,
            "POSTGRES_USER": "postgres",
            **{f"{db.upper()}_DB_PASSWORD": passwords[db] for db in APP_DATABASES},
        }
        done = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise StackError(f"{INIT_SCRIPT.name} failed: {done.stderr.strip()}")
