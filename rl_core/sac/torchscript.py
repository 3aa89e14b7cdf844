"""TorchScript, used quietly: torch 2.13 still compiles and runs it but warns that it is
deprecated (its successor is `torch.export` + AOTInductor). rlops scripts the exported actor
(export.py) and its training step (sac_step.py); the warning is silenced only around those
calls, so a user's own TorchScript still warns."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Hide torch 2.13's TorchScript deprecation warnings, and only those."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield
