"""Environments: making them from an id and kwargs, the env packages a run may import,
and envs offered by installed packages' entry points."""
