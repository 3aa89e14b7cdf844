"""A pytest plugin that injects one defect of tests/regression/defects.py for a whole session.

It answers "would the fast unit tests have caught this bug?" without touching product code:

    RLOPS_DEFECT="squash correction dropped" \\
        .venv/bin/python -m pytest -p tests.regression.defect_plugin tests/unit -x -q

The patches hold in the pytest process only: a test that trains in a fresh interpreter runs
healthy code. Without RLOPS_DEFECT the plugin does nothing.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from tests.regression.defects import DEFECTS

ENV = "RLOPS_DEFECT"
_injection = contextlib.ExitStack()


def pytest_configure(config: pytest.Config) -> None:
    """Inject the defect RLOPS_DEFECT names before any test module is imported."""
    name = os.environ.get(ENV)
    if not name:
        return
    if name not in DEFECTS:
        raise pytest.UsageError(f"{ENV}={name!r} is not a defect; one of: {', '.join(DEFECTS)}")
    defect = DEFECTS[name]
    if defect.overrides:
        raise pytest.UsageError(
            f"{ENV}={name!r} is a config value ({defect.overrides}), not a patch: unit tests "
            "build their own configs, so there is nothing to inject into them"
        )
    _injection.enter_context(defect.injected())


def pytest_unconfigure(config: pytest.Config) -> None:
    _injection.close()
