"""Where a model came from: the code version that trained it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_SHA_ENV = "RLOPS_GIT_SHA"
"""Set in images built without a .git folder (the Dockerfile passes it as a build arg)."""


def git_sha() -> str:
    """The commit of the rlops checkout, `$RLOPS_GIT_SHA`, or "unknown"."""
    if os.environ.get(GIT_SHA_ENV):
        return os.environ[GIT_SHA_ENV]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()
