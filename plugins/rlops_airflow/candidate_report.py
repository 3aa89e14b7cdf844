"""One HTML page per candidate: what a reviewer reads to trust a promotion, or its refusal.

A candidate's figures are spread over its MLflow run (params, metrics, lineage tags, the reward
curve, the episode GIF, the latency table) and the decision `promote` takes. `promote` gathers
them here once it has applied the decision and logs the page as `report/candidate.html` on the
run: the promote task's "MLflow run" button in Airflow opens the run, the page is under its
Artifacts.

MLflow's artifact viewer shows an HTML artifact as a blob URL in a sandboxed iframe, where a
link relative to the page resolves nowhere: every picture is embedded as a data URI and the
page needs nothing but itself. Jinja2 renders it with autoescaping, so a param or a reason that
holds markup shows as text.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Run

from rl_core.evaluation.confidence import paired_difference
from rl_core.evaluation.episodes import EVAL_MEAN_RETURN, EVAL_RETURN_CI_HIGH, EVAL_RETURN_CI_LOW
from rl_core.evaluation.video import VIDEO_ARTIFACT
from rl_core.policy.latency import LatencyRow
from rlops_airflow.mlflow_run import download, has_artifact, run_url
from rlops_airflow.promotion import Candidate, ChampionScore, Decision, Thresholds
from rlops_registry import tags

log = logging.getLogger(__name__)

REPORT_ARTIFACT = "report/candidate.html"
CURVE_ARTIFACT = "reward_curve.png"
"""Where rl_core.run.training logs the reward curve of a tracked run."""
LATENCY_ARTIFACT = "benchmark/latency.json"
"""Where `stages.export.benchmark_candidate` logs the latency rows (`LatencyRow.as_dict()` each)."""
LINEAGE_PREFIX = "lineage."

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("rlops_airflow", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a name the template expects but was not given fails
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class PromotionRecord:
    """What `promote` decided and on which figures: the part of the story the run lacks."""

    candidate: Candidate
    champion: ChampionScore | None
    """The champion as compared (its returns on `eval_seeds`); None: there was none."""
    thresholds: Thresholds
    eval_seeds: Sequence[int]
    decision: Decision
    model_name: str
    champion_version: str | None
    """The `champion` alias once the decision was applied."""


def write_candidate_report(run_id: str, record: PromotionRecord) -> None:
    """Log the report on the run, or say loudly why not; never raise.

    The decision is applied before this runs. Raising would fail `promote` for a missing page:
    the DAG run would turn failed and page someone, `announce_champion` would not announce a
    champion that is in fact crowned, and a retry would decide again. So a failure is logged
    with its traceback and recorded in the run's tag `rlops.report`, which otherwise names
    the artifact.
    """
    client = MlflowClient()
    try:
        html = render_candidate_report(client.get_run(run_id), record)
        client.log_text(run_id, html, REPORT_ARTIFACT)
    except Exception as exc:
        log.exception("candidate report NOT written for MLflow run %s", run_id)
        reason = f"failed: {type(exc).__name__}: {exc}; see the promote task's log"
        client.set_tag(run_id, tags.REPORT, reason[: tags.REASON_LIMIT])
        return
    client.set_tag(run_id, tags.REPORT, REPORT_ARTIFACT)
    log.info(
        "candidate report: artifact %s of MLflow run %s %s",
        REPORT_ARTIFACT,
        run_id,
        run_url(run_id) or "",
    )


def render_candidate_report(run: Run, record: PromotionRecord) -> str:
    """The page for `run` and the decision taken on it, as one self-contained HTML file."""
    run_id = run.info.run_id
    run_tags, metrics = run.data.tags, run.data.metrics
    with tempfile.TemporaryDirectory() as scratch:
        files = _RunFiles(run_id, Path(scratch))
        curve = files.data_uri(CURVE_ARTIFACT, "image/png")
        video = files.data_uri(VIDEO_ARTIFACT, "image/gif")
        latency = files.json(LATENCY_ARTIFACT)
    return _TEMPLATES.get_template("candidate_report.html.j2").render(
        where=_where(run, record),
        decision=record.decision,
        champion_version=record.champion_version,
        thresholds=record.thresholds,
        gate=_gate(metrics, record),
        comparison=_comparison(record),
        latency=_latency(latency),
        cpu=run_tags.get(f"{LINEAGE_PREFIX}cpu", "not recorded"),
        curve=curve,
        video=video,
        video_missing=run_tags.get(tags.VIDEO, "not recorded"),
        params=sorted(run.data.params.items()),
        lineage=sorted(
            (key.removeprefix(LINEAGE_PREFIX), value)
            for key, value in run_tags.items()
            if key.startswith(LINEAGE_PREFIX)
        ),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )


class _RunFiles:
    """Artifacts of one run, fetched on demand; None for one the run does not have."""

    def __init__(self, run_id: str, scratch: Path) -> None:
        self.run_id, self.scratch = run_id, scratch

    def _fetch(self, artifact: str) -> bytes | None:
        folder, _, name = artifact.rpartition("/")
        if not has_artifact(self.run_id, folder or None, name):
            return None
        return download(self.run_id, artifact, self.scratch).read_bytes()

    def data_uri(self, artifact: str, mime: str) -> str | None:
        data = self._fetch(artifact)
        return None if data is None else f"data:{mime};base64,{base64.b64encode(data).decode()}"

    def json(self, artifact: str) -> Any:
        data = self._fetch(artifact)
        return None if data is None else json.loads(data)


def _where(run: Run, record: PromotionRecord) -> dict[str, Any]:
    run_tags = run.data.tags
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "experiment_id": run.info.experiment_id,
        "run_url": _web_link(run_url(run.info.run_id)),
        "artifact": REPORT_ARTIFACT,
        "dag_id": run_tags.get(tags.AIRFLOW_DAG_ID),
        "airflow_run_id": run_tags.get(tags.AIRFLOW_RUN_ID),
        "airflow_url": _web_link(run_tags.get(tags.AIRFLOW_UI_URL)),
        "model_name": record.model_name,
        "version": record.candidate.version,
    }


def _web_link(url: str | None) -> str | None:
    """`url` when it is a web address; a tag anyone may edit must not become a `javascript:`
    link (escaping keeps markup out of an href, not a scheme)."""
    return url if url and url.startswith(("http://", "https://")) else None


def _gate(metrics: dict[str, float], record: PromotionRecord) -> dict[str, Any]:
    """The reward gate's figure with its interval, as `evaluate` logged it, and the speedup."""
    thresholds, candidate = record.thresholds, record.candidate
    return {
        "mean": metrics.get(EVAL_MEAN_RETURN),
        "low": metrics.get(EVAL_RETURN_CI_LOW),
        "high": metrics.get(EVAL_RETURN_CI_HIGH),
        "reward_passed": thresholds.reward_passes(candidate.reward),
        "speedup": candidate.speedup,
        "speedup_passed": thresholds.speedup_passes(candidate.speedup),
        "episodes": list(zip(record.eval_seeds, candidate.returns, strict=True)),
    }


def _comparison(record: PromotionRecord) -> dict[str, Any]:
    """The paired comparison `decide` made with the champion, or why it made none."""
    candidate, champion, thresholds = record.candidate, record.champion, record.thresholds
    if not thresholds.compare_with_champion:
        return {"skipped": "switched off (compare_with_champion is false)"}
    if champion is None:
        return {"skipped": "no champion yet: nothing to compare with"}
    if champion.version == candidate.version:
        return {"skipped": f"v{candidate.version} is the champion already"}
    difference = paired_difference(candidate.returns, champion.returns, thresholds.confidence)
    champion_mean = float(np.asarray(champion.returns, dtype=np.float64).mean())
    allowed = 0.0 - thresholds.champion_margin(champion_mean)  # as `decide` states it
    return {
        "skipped": None,
        "champion_version": champion.version,
        "champion_mean": champion_mean,
        "difference": difference,
        "allowed": allowed,
        "passed": difference.low >= allowed,
        "episodes": [
            (seed, mine, theirs, mine - theirs)
            for seed, mine, theirs in zip(
                record.eval_seeds, candidate.returns, champion.returns, strict=True
            )
        ],
    }


def _latency(recorded: Any) -> list[LatencyRow] | None:
    """The benchmark's rows as `benchmark_candidate` logged them (None: not recorded)."""
    if recorded is None:
        return None
    names = [f.name for f in fields(LatencyRow)]
    try:
        return [LatencyRow(**{n: row[n] for n in names if n in row}) for row in recorded]
    except TypeError as exc:
        raise ValueError(
            f"{LATENCY_ARTIFACT} must be a list of objects with fields {names}: {exc}"
        ) from exc
