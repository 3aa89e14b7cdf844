"""Example envs for rlops: install this package and train them through the pipeline DAG."""

from rlops_example_envs.point_reach import PointReachEnv

__all__ = ["PointReachEnv"]
