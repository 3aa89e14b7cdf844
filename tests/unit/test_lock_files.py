"""pyproject.toml declares the direct pins; requirements.lock and requirements.txt are generated
from it by scripts/lock.sh. A pin changed in one place but not regenerated fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)


def _pins(path: Path) -> dict[str, Version]:
    return {canonicalize_name(n): Version(v) for n, v in PIN.findall(path.read_text())}


def _direct(*groups: str) -> list[Requirement]:
    lines = list(PROJECT["dependencies"])
    for group in groups:
        lines += PROJECT["optional-dependencies"][group]
    return [Requirement(r) for r in lines if not r.startswith("rlops[")]


def _stale(requirements: list[Requirement], pins: dict[str, Version]) -> list[str]:
    """Direct requirements the generated file does not satisfy (the lock's torch carries +cpu)."""
    return [
        str(r)
        for r in requirements
        if canonicalize_name(r.name) not in pins
        or not r.specifier.contains(pins[canonicalize_name(r.name)])
    ]


def test_every_direct_pin_is_in_the_lock_at_its_version() -> None:
    lock = _pins(REPO / "requirements.lock")
    assert len(lock) > 200
    assert not _stale(_direct("airflow", "serving", "dev"), lock)
    assert str(lock["torch"]).endswith("+cpu")


def test_every_line_of_the_lock_carries_a_hash() -> None:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    body = "\n".join(line for line in lines if not line.startswith("#"))
    blocks = re.split(r"\n(?=[a-z0-9])", body.strip())
    assert blocks and all("--hash=sha256:" in block for block in blocks)


def test_the_runtime_pins_are_the_lock_without_the_dev_tools() -> None:
    runtime, lock = _pins(REPO / "requirements.txt"), _pins(REPO / "requirements.lock")
    assert not _stale(_direct("airflow", "serving"), runtime)
    assert {name: lock[name] for name in runtime} == runtime
    assert "pytest" not in runtime and "mkdocs" not in runtime
