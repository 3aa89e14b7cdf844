"""Write a .env for docker-compose.yaml: .env.example with every empty secret filled in.

    python3 docker/gen_env.py .env

The file is created with mode 0600 (only its owner reads the secrets) and never overwritten:
an existing one keeps the passwords its volumes were initialised with. Standard library only,
so it runs before any virtualenv exists. Never commit the result.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
MODE = 0o600


def secret_for(name: str) -> str:
    """A fresh value of the shape each secret needs (all URL-safe)."""
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "AIRFLOW_JWT_SECRET":
        return secrets.token_urlsafe(64)  # 86 characters; Airflow warns below 64
    return secrets.token_urlsafe(24)  # 32 characters: MLflow wants at least 12


def render(example: str) -> str:
    """example with `NAME=` lines (no value) completed; comments and set values kept."""
    lines = []
    for line in example.splitlines():
        name, equals, value = line.partition("=")
        if equals and not value and not line.startswith("#"):
            line = f"{name}={secret_for(name)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write(path: Path) -> None:
    """Create `path` with mode 0600 and the rendered example; FileExistsError if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    with os.fdopen(fd, "w") as file:
        os.fchmod(fd, MODE)  # whatever the umask
        file.write(render(EXAMPLE.read_text()))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 docker/gen_env.py PATH   (e.g. .env; written 0600)", file=sys.stderr)
        return 2
    try:
        write(Path(argv[0]))
    except FileExistsError:
        print(f"error: {argv[0]} exists; not overwritten (delete it first)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
