"""A stack in a temporary folder, for tests and benchmarks that want a fresh one each time."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack.stack import Stack


@contextmanager
def temporary_stack(prefix: str, **options: Any) -> Iterator[Stack]:
    """`Stack.start(folder, **options)` in a new temporary folder; stopped (by process group)
    and the folder deleted afterwards."""
    # Not under pytest's basetemp nor mkdtemp's 0700: when we are root, Postgres runs as the
    # `postgres` OS user, who must be able to reach its data directory.
    state_dir = Path(tempfile.mkdtemp(prefix=prefix))
    state_dir.chmod(0o755)
    try:
        running = Stack.start(state_dir, **options)
        try:
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
