"""Envs that installed packages offer through the `rlops.envs` entry-point group.

A package declares `[project.entry-points."rlops.envs"]` with the env id as the name and the
env class as the value (`PointReach-v0 = "rlops_example_envs.point_reach:PointReach"`). This
module reads those declarations from package metadata only: nothing is imported, so the DAG
file can propose the ids in its trigger form while staying light to parse.
`rl_core.envs.spec` registers them with gymnasium when an env is made.
"""

from __future__ import annotations

from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "rlops.envs"


def offered_envs() -> dict[str, str]:
    """Env id -> entry point ("module:Class") of every env an installed package offers."""
    return {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}
