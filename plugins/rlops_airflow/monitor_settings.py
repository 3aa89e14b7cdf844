"""The champion monitor's settings: the one definition of its trigger-form params.

Like `PipelineSettings`: the monitor DAG's Params are generated from this model
(`rlops_airflow.params.settings_params`), its tasks read their params through it
(`parse_conf`: an unknown key or a bad value fails the run naming it, in the pipeline's
words), and the monitoring library's dataclasses (`Evidence`, `DriftRule`, `CanaryRule`)
take their defaults from `DEFAULTS`. A default, a bound or a title is written once, here.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, StrictBool

from rlops_airflow.settings import MODEL_NAME, form_field

MODEL, EVIDENCE, DRIFT, CANARY = "Model", "Evidence", "Drift guard", "Canary"


class MonitorSettings(BaseModel):
    """One monitor run's settings; field names are the DAG's params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_model_name: str | None = form_field(
        None,
        MODEL,
        "Registered model name",
        "The one MLflow registered model whose `champion` to check. Empty: every model whose "
        "champion is an rlops policy (the pipeline's model for an env is rlops-sac-<env name> "
        "unless its run named one).",
        pattern=MODEL_NAME,
    )
    episodes: int = form_field(
        200,
        EVIDENCE,
        "Episodes",
        "Deterministic episodes on fresh env seeds (Pendulum: about 30 ms each). Fewer make a "
        "noisier mean: a good Pendulum policy's episodes spread by about 90.",
        ge=2,
        le=2000,
    )
    reference_episodes: int = form_field(
        1000,
        EVIDENCE,
        "Reference episodes",
        "Simulator episodes of a version's first check, the reference later checks are "
        "compared with. A small reference's own error is shared by every later check.",
        ge=2,
        le=20_000,
    )
    min_served_episodes: int = form_field(
        100,
        EVIDENCE,
        "Served episodes needed",
        "Judge on episodes reported to the policy server (POST /v1/episodes) when the window "
        "holds at least this many; else on simulator episodes.",
        ge=2,
        le=1_000_000,
    )
    served_window_minutes: int = form_field(
        60,
        EVIDENCE,
        "Served-traffic window (minutes)",
        "How far back from the check reported episodes count.",
        ge=1,
        le=10_080,
    )
    confirm_with_simulator: StrictBool = form_field(
        True,
        EVIDENCE,
        "Confirm served evidence in the simulator",
        "A served-traffic breach counts towards a rollback, and a canary verdict crowns, only "
        "if fresh simulator episodes agree. Off: served reports act alone, and a client holding "
        "a report key can roll back or crown by lying within the bounds.",
    )
    drift_tolerance: float = form_field(
        0.05,
        DRIFT,
        "Drift tolerance",
        "A breach: the whole interval of (online - reference) mean return is below minus this "
        "fraction of the reference mean's magnitude (0.05 = 5%).",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    breaches_to_rollback: int = form_field(
        2,
        DRIFT,
        "Breaches to roll back",
        "Consecutive breaching checks before `champion` is rolled back.",
        ge=1,
        le=24,
    )
    confidence: float = form_field(
        0.95,
        DRIFT,
        "Confidence level",
        "Two-sided level of the intervals the drift guard and the canary decide on.",
        ge=0.5,
        le=0.999,
        allow_inf_nan=False,
    )
    noninferiority_margin: float = form_field(
        0.0,
        CANARY,
        "Canary non-inferiority margin",
        "The challenger passes when the low end of the interval of (challenger - champion) is "
        "at least minus this fraction of the champion's magnitude.",
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
    )
    promote_on_canary: StrictBool = form_field(
        False,
        CANARY,
        "Promote on canary evidence",
        "Crown a challenger whose canary verdict passes (its gates must have passed too). "
        "Off: the verdict is only logged.",
    )

    @property
    def window(self) -> timedelta:
        """How far back from a check served episodes count."""
        return timedelta(minutes=self.served_window_minutes)


DEFAULTS = MonitorSettings()
"""What a run without conf uses; the library's dataclasses default to it."""
