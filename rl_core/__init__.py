"""rl_core: Soft Actor-Critic for gymnasium, with export, benchmark and optional MLflow tracking.

Usable without Airflow; the pipeline in `plugins/` builds on it, never the other way round.
"""

__version__ = "0.1.0"
