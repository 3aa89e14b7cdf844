"""Write a .env for docker-compose.yaml: .env.example with every empty secret filled in.

    python3 docker/gen_env.py .env

The file is created with mode 0600 (only its owner reads the secrets) and never overwritten:
an existing one keeps the passwords its volumes were initialised with. Standard library only,
so it runs before any virtualenv exists. Never commit the result.

The policy server's API keys: two tokens are minted (a client's, scopes act and report; and
Prometheus', scope metrics), and `RLOPS_SERVING_API_KEYS` lists only their SHA-256, the way
`python -m rlops_serving.auth new` makes keys (same token format and digest), so the server
never sees a token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
MODE = 0o600
TOKEN_PREFIX = "rlops_"  # as rlops_serving.auth.TOKEN_PREFIX
SERVING_KEYS = {
    "RLOPS_SERVING_CLIENT_TOKEN": ("compose-client", ["act", "report"]),
    "RLOPS_SERVING_METRICS_TOKEN": ("compose-metrics", ["metrics"]),
}
"""Token variable -> the key's id and scopes."""
SERVING_KEYS_LIST = "RLOPS_SERVING_API_KEYS"
"""Derived from the tokens above, never random: the JSON list of their entries."""


def secret_for(name: str) -> str:
    """A fresh value of the shape each secret needs (all URL-safe)."""
    if name == "AIRFLOW_FERNET_KEY":
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    if name == "AIRFLOW_JWT_SECRET":
        return secrets.token_urlsafe(64)  # 86 characters; Airflow warns below 64
    if name in SERVING_KEYS:
        key_id, _ = SERVING_KEYS[name]
        return f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"  # rlops_serving.auth
    return secrets.token_urlsafe(24)  # 32 characters: MLflow wants 12, tickets 32


def serving_keys(values: dict[str, str]) -> str:
    """The server's key list for the tokens in `values`: ids, scopes, SHA-256 digests."""
    entries = [
        {
            "id": key_id,
            "sha256": hashlib.sha256(values[name].encode()).hexdigest(),
            "scopes": scopes,
        }
        for name, (key_id, scopes) in SERVING_KEYS.items()
    ]
    return json.dumps(entries, separators=(",", ":"))  # no spaces: one plain .env value


def _setting(line: str) -> tuple[str, str] | None:
    """(name, value) of a `NAME=value` line; None for comments and other lines."""
    name, equals, value = line.partition("=")
    return (name, value) if equals and not line.startswith("#") else None


def render(example: str) -> str:
    """example with `NAME=` lines (no value) completed; comments and set values kept."""
    lines = example.splitlines()
    settings = dict(filter(None, map(_setting, lines)))
    empty = {name for name, value in settings.items() if not value}
    settings |= {name: secret_for(name) for name in empty - {SERVING_KEYS_LIST}}
    if SERVING_KEYS_LIST in empty:
        settings[SERVING_KEYS_LIST] = serving_keys(settings)
    completed = (
        f"{line}{settings[name]}" if (name := line.removesuffix("=")) in empty else line
        for line in lines
    )
    return "\n".join(completed) + "\n"


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
