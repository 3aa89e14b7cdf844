"""The names of the files a training run writes, on disk and in its MLflow run.

One home, so the writer (training, the CLI) and every reader (resume, evaluation, export,
tuning, retrain, reproduce, the policy loader) cannot disagree on a name.
"""

CHECKPOINT_FILE = "checkpoint.pt"
"""The whole training state (networks, optimizers, replay buffer): what a retry resumes from."""
ACTOR_FILE = "actor.pt"
"""The trained actor alone (`rl_core.policy.checkpoint.save_actor`): what evaluation and
export read."""
BEST_ACTOR_FILE = "best_actor.pt"
"""Saved beside `ACTOR_FILE` when evaluation during training ran: its best actor."""
CONFIG_ARTIFACT = "config.yaml"
"""The resolved config the run trained with (`SACConfig.resolved()`), at the run's root."""
CHECKPOINT_ARTIFACT_DIR = "checkpoint"
"""The run's folder holding `CHECKPOINT_FILE`."""
ACTOR_ARTIFACT_DIR = "actor"
"""The run's folder holding `ACTOR_FILE` (and `BEST_ACTOR_FILE`), beside the checkpoint: what
evaluation and export download, not the whole training state."""
