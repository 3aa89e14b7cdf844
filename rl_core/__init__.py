"""rl_core: Soft Actor-Critic for gymnasium, with export, benchmark and optional MLflow tracking.

Usable without Airflow; the pipeline in `plugins/` builds on it, never the other way round.
A subpackage per concept, each building on those above it in this list:

- `envs`: making environments, the env packages a run may import, entry-point envs;
- `common`: the run's config and presets, the tuning space, the CPU's capabilities, artifact
  names, tracking (a no-op without MLflow), one-line errors, process-wide settings;
- `sac`: the algorithm: networks, replay buffer, agent, the readable update (`sac_reference`)
  and the fast one (`sac_step`) with the compilers that run it;
- `evaluation`: deterministic episodes, confidence intervals, videos, plots;
- `policy`: policy files: checkpoints, actor files, TorchScript / ONNX exports and their CPU
  latency, the MLflow policy model, and the checks each passes before it is loaded or shipped;
- `run`: a training run end to end: the training loop, lineage, reproduction, the CLI.

One edge goes up: `common.config` asks `sac.step_compiler` which compiler a setting resolves
to (that module imports no torch until it compiles).
"""

__version__ = "0.1.0"
