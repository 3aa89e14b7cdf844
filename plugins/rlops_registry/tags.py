"""Every tag name rlops writes or reads, in one place: a contract between its parts.

Model-version tags are read by the policy server and the drift monitor as well as the
pipeline; run tags tie an MLflow run to its Airflow run and record the pipeline's outcome.
"""

from rl_core.policy.policy_integrity import DIGESTS_TAG

REASON_LIMIT = 1000
"""Characters of a failure's reason kept in a tag (MLflow caps tag values)."""

# --- on a registered model version -----------------------------------------------------------
REWARD = "reward"
"""Mean deterministic return on the eval seeds: what the gate and the drift guard compare."""
SPEEDUP = "speedup"
"""Eager over TorchScript median latency at batch 1."""
REWARD_GATE = "gate.reward"
SPEEDUP_GATE = "gate.speedup"
EVAL_SEEDS = "eval_seeds"
"""JSON list of the env seeds the reward was measured on."""
EVAL_RETURNS = "eval_returns"
"""JSON list of the return of each of those episodes, in seed order: what lets two versions
be compared episode by episode (paired) on the same seeds."""
ENV_ID = "env_id"
ENV_KWARGS = "rlops.env_kwargs"
"""JSON object of the keyword arguments the env was made with (`{}`: none). With ENV_ID, the
env a version acts in; all versions of one registered model act in the same env."""
ARTIFACT_SHA256 = DIGESTS_TAG
""""rlops.sha256": JSON object {file path: sha256} of every file of the version's policy
folder, copied at register from its LoggedModel (which the export task created with it). The
server, the monitor and promotion refuse a downloaded folder that differs
(rl_core/policy/policy_integrity.py); a version without it is refused as predating digest checks."""
CONFIG_HASH = "config_hash"
GIT_SHA = "git_sha"
SOURCE_RUN_ID = "source_run_id"
SEED = "seed"
TUNED_BY = "rlops.tuned_by"
"""On a version and its candidate run trained from a tuning study's best config:
`<study>#<trial number>` (the pipeline's `tuned_by`)."""
DRIFT_RETRAIN_OF = "rlops.drift_retrain.of"
"""On a version and its candidate run trained because a champion drifted:
`<model>@v<rolled-back version>` (the pipeline's `drift_retrain_of`)."""
DRIFT_RETRAIN_LAST = "rlops.drift_retrain.last"
"""On a registered model: JSON {"run": <dag_id>/<run_id>, "at": ISO time} of its last
drift-triggered pipeline run, what the retrain cooldown is measured from."""
RUN_KEY = "airflow.run_key"
"""`<dag_id>/<run_id>` of the Airflow run that registered the version: one version per run."""
PROMOTION = "rlops.promotion"
""""promoted" or "rejected"."""
REJECTION_REASONS = "rlops.rejection_reasons"
REPLACED_VERSION = "rlops.replaced_version"
"""On a promoted version: the champion it replaced (the next rollback target after it)."""
ONLINE_RETURN = "rlops.online_return"
"""The drift monitor's latest online mean return (the server exports it as a gauge)."""
ONLINE_CHECKED_AT = "rlops.online_checked_at"
ONLINE_RUN = "rlops.online_run_id"
DRIFT_REFERENCE_PREFIX = "rlops.drift.reference."
"""+ "simulator": the monitoring run of simulator episodes every later check of the version is
compared with, whatever its evidence (never served traffic, which a client could poison)."""
DRIFT_CHECK = "rlops.drift.last_check"
"""The latest check's statistic and interval, in words (also on the check's run)."""
DRIFT_BREACHES = "rlops.drift.breaches"
"""Space-separated Airflow run keys of the consecutive breaching checks so far (empty: none)."""
DRIFT_REASON = "rlops.drift.reason"
DRIFT_DETECTED_AT = "rlops.drift.detected_at"
DRIFT_ACTION = "rlops.drift.action"
CANARY_VERDICT = "rlops.canary.verdict"
"""On the challenger: the latest canary comparison with the champion, in words."""
CANARY_RUN = "rlops.canary.run_id"
ROLLBACK_REASON = "rlops.rollback.reason"
ROLLBACK_AT = "rlops.rollback.at"
ROLLBACK_REPLACED = "rlops.rollback.replaced_version"

# --- on an MLflow run ----------------------------------------------------------------------
TUNING_STUDY = "rlops.tuning.study"
TUNING_TRIAL = "rlops.tuning.trial"
"""On a tuning trial's run: its Optuna study and trial number."""
AIRFLOW_DAG_ID = "airflow.dag_id"
AIRFLOW_RUN_ID = "airflow.run_id"
AIRFLOW_UI_URL = "airflow.ui_url"
CANDIDATE_KEY = "rlops.candidate_key"
"""`<dag_id>/<run_id>/seed=<seed>`: how every task and retry finds its candidate's run."""
TRAINED = "rlops.trained"
SELECTED = "rlops.selected"
"""On the candidate the seed sweep picked: the run the rest of the pipeline logs to."""
SWEEP_RANK = "rlops.sweep.rank"
SWEEP_WINNER = "rlops.sweep.winner"
GATE_RESULT = "rlops.gate.reward"
VIDEO = "rlops.video"
"""Where the candidate's episode GIF is (`video/episode.gif`), or `none: <why>` without one."""
OUTCOME = "rlops.outcome"
REPORT = "rlops.report"
"""Where the candidate's HTML report is (`report/candidate.html`), or `failed: <why>`."""
MODEL_NAME = "rlops.model_name"
MODEL_VERSION = "rlops.model_version"
DRIFT_VERDICT = "rlops.drift"
"""On a drift check's run: "reference" (the version's simulator reference), "breach", "none",
or "unconfirmed" (a served breach the simulator re-check did not confirm: moves nothing)."""
MONITOR_PURPOSE = "rlops.monitor.purpose"
""""drift" (a check of the champion), "reference" (its simulator reference, made for a served
check that found none) or "canary" (challenger against champion)."""
MONITOR_EVIDENCE = "rlops.monitor.evidence"
"""On a monitoring run: which evidence the check used (served traffic or simulator), in words."""
SERVED_BY = "rlops.served_by"
"""On a run of served episodes: the server instance (host, pid, start time) that wrote it."""
