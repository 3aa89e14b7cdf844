"""What a run's conf may make a worker do when it builds an env.

A conf (the trigger form, `rlops train --set`, a tuning study) names modules the workers
import (`env_packages`, and the module of a `"module:EnvId-v0"` id) and keyword arguments
for `gymnasium.make`. Importing a module runs its code, so a conf may import only:

- the packages that offer envs through the `rlops.envs` entry points (whoever installed them
  on the workers trusted them), and
- the modules listed in the workers' `RLOPS_ALLOWED_ENV_MODULES` (comma-separated),

each with its sub-modules: importing `pkg.envs` runs `pkg/__init__.py` anyway, so the
package is the unit of trust, not one of its files. `__main__` is the exception: importing it
runs a package as a program. Registered ids (gymnasium's own, and those an allowed module
registered when it was imported) need no import named by the conf and stay available.

Keyword arguments reach the env's constructor unchanged. One that names a file (MuJoCo's
`xml_file`, any `*_file`, `*_path`, `*_dir`, `*_filename`) would let a conf point an env at
any file the worker can read, so such names are refused unless the workers set
`RLOPS_ALLOW_ENV_FILE_KWARGS=1`. This is a rule on names: a constructor that takes a path
under another name is not caught, which is why the module allowlist is the real fence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from rl_core.envs.env_plugins import ENTRY_POINT_GROUP, offered_envs

ALLOWED_MODULES_ENV = "RLOPS_ALLOWED_ENV_MODULES"
ALLOW_FILE_KWARGS_ENV = "RLOPS_ALLOW_ENV_FILE_KWARGS"
MODULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
"""A dotted Python module name, as `env_packages` and `RLOPS_ALLOWED_ENV_MODULES` take them."""
FILE_WORDS = ("file", "path", "dir", "filename")
"""A keyword argument named one of these, or ending in `_` and one of these, names a file."""


def allowed_env_modules() -> dict[str, str]:
    """Module a conf may import (with its sub-modules) -> where the permission comes from."""
    allowed = {
        entry_point.partition(":")[0].split(".")[0]: f"{ENTRY_POINT_GROUP} entry points"
        for entry_point in offered_envs().values()
    }
    configured = os.environ.get(ALLOWED_MODULES_ENV, "").split(",")
    for name in filter(None, map(str.strip, configured)):
        if not re.fullmatch(MODULE_NAME, name):
            raise ValueError(
                f"{ALLOWED_MODULES_ENV}: {name!r} is not a dotted module name; give "
                "comma-separated module names, e.g. ale_py,gymnasium_robotics"
            )
        allowed.setdefault(name, ALLOWED_MODULES_ENV)
    return allowed


def _is_allowed(module: str, allowed: Iterable[str]) -> bool:
    if "__main__" in module.split("."):
        return False
    return any(module == name or module.startswith(f"{name}.") for name in allowed)


def _allowed_text(allowed: Mapping[str, str]) -> str:
    by_source: dict[str, list[str]] = {}
    for name, source in allowed.items():  # entry points first
        by_source.setdefault(source, []).append(name)
    listed = [f"{', '.join(sorted(names))} ({source})" for source, names in by_source.items()]
    if ALLOWED_MODULES_ENV not in by_source:
        listed.append(f"{ALLOWED_MODULES_ENV} (comma-separated, on the workers) adds others")
    return "; ".join(listed) if allowed else f"none; {listed[-1]}"


def _module_refusals(env_id: str, packages: Iterable[str]) -> list[str]:
    """One line per module the conf would import that it may not, naming the field."""
    allowed = allowed_env_modules()
    asked = [(f"env_packages[{index}]", name) for index, name in enumerate(packages)]
    module = env_id.rpartition(":")[0]
    if module:
        asked.append(("env_id", module))
    return [
        f"{field}: module {name!r} is not allowed to be imported by a run's conf; "
        f"allowed: {_allowed_text(allowed)}"
        for field, name in asked
        if not _is_allowed(name, allowed)
    ]


def _names_a_file(name: str) -> bool:
    return any(name == word or name.endswith(f"_{word}") for word in FILE_WORDS)


def _kwarg_refusals(kwargs: Mapping[str, object]) -> list[str]:
    """One line per keyword argument that names a file, unless the workers allow them."""
    if os.environ.get(ALLOW_FILE_KWARGS_ENV) == "1":
        return []
    return [
        f"env_kwargs.{name}: a keyword argument naming a file (xml_file, *_file, *_path, "
        f"*_dir, *_filename) would let a run's conf make the env read any file the worker "
        f"can; set {ALLOW_FILE_KWARGS_ENV}=1 on the workers to allow it"
        for name in kwargs
        if _names_a_file(name)
    ]


def env_refusals(env_id: str, packages: Iterable[str], kwargs: Mapping[str, object]) -> list[str]:
    """Everything about this env that a run's conf may not ask of a worker; [] when none."""
    return _module_refusals(env_id, packages) + _kwarg_refusals(kwargs)
