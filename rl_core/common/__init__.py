"""What every part of rl_core shares: the run's config and presets, the tuning space, the
CPU's capabilities, artifact names, tracking (a no-op without MLflow), one-line errors,
and the process-wide settings a training applies."""
