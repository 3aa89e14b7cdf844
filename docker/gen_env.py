"""Print a .env for docker-compose.yaml: .env.example with every empty secret filled in.

    python3 docker/gen_env.py > .env

Standard library only, so it runs before any virtualenv exists. Never commit the result.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def secret_for(name: str) -> str:
    """A fresh value of the shape each secret needs (all URL-safe)."""
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "AIRFLOW_JWT_SECRET":
        return secrets.token_urlsafe(64)  # 86 characters; Airflow warns below 64
    return secrets.token_urlsafe(24)


def render(example: str) -> str:
    """example with `NAME=` lines (no value) completed; comments and set values kept."""
    lines = []
    for line in example.splitlines():
        name, equals, value = line.partition("=")
        if equals and not value and not line.startswith("#"):
            line = f"{name}={secret_for(name)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(EXAMPLE.read_text()))
