"""The Airflow Assets that tie the pipeline and the champion monitor together.

One asset per meaning, not per registered model: models are created by runs (one per env), and
an asset a DAG schedules on or produces must be declared when the DAG file is parsed, so the UI's
asset graph shows it. Which model an event is about travels in the event's `extra`
(`MODEL_NAME` and the versions), read by the consumer. Imported when DAG files are parsed:
Airflow only.
"""

from __future__ import annotations

from airflow.sdk import Asset

CHAMPION = Asset(name="rlops_champion", uri="rlops://champion")
"""A model version became `champion` (pipeline `announce_champion`); extra: model, version."""
CHAMPION_DEGRADED = Asset(name="rlops_champion_degraded", uri="rlops://champion-degraded")
"""The monitor rolled a drifting champion back (`announce_degraded`); extra: model, the
rolled-back version, the restored one (None: no previous champion), the reason."""

MODEL_NAME = "model_name"
VERSION = "version"
ROLLED_BACK_VERSION = "rolled_back_version"
RESTORED_VERSION = "restored_version"
REASON = "reason"
