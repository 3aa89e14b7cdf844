"""The candidate report `promote` logs, read in headless Chromium as MLflow's viewer shows it.

Candidate runs are built in a real MLflow store (SQLite) with the files a trained run has, made
small: params, lineage tags, the reward curve PNG, an episode GIF, the evaluation, the latency
rows; their versions are registered in its real registry. `promote_candidate` then decides and
writes the page. The browser loads the page as MLflow's artifact viewer does (a blob URL in a
sandboxed iframe, where a relative link reaches nothing) and as a plain page for a screenshot
(test-artifacts/candidate-report.png, or $RLOPS_TEST_ARTIFACTS).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from rl_core.evaluation.confidence import paired_difference
from rl_core.evaluation.episodes import (
    EVAL_MEAN_RETURN,
    EVAL_RETURN_CI_HIGH,
    EVAL_RETURN_CI_LOW,
    EVALUATION_ARTIFACT,
    EvalResult,
)
from rl_core.evaluation.plots import reward_curve_png
from rl_core.policy.latency import LatencyRow
from rl_core.run import lineage
from rlops_airflow.candidate_report import (
    CURVE_ARTIFACT,
    LATENCY_ARTIFACT,
    REPORT_ARTIFACT,
    VIDEO_ARTIFACT,
)
from rlops_airflow.mlflow_run import AirflowRun, download, get_or_create_candidate_run
from rlops_airflow.promotion import reward_interval
from rlops_airflow.settings import PipelineSettings
from rlops_airflow.stages.promote import promote_candidate
from rlops_registry import tags
from rlops_registry.registry import CHALLENGER, CHAMPION, ModelRegistry
from tests.browser import chromium, save_screenshot

DAG = "rlops_sac_pipeline"
MARKUP = "<script>window.pwned = true</script><b>not bold</b>{{ 7 * 7 }}"
"""A param value that would run, format or compute were the page not escaped."""
LATENCY = [
    LatencyRow(b, 60.0 + b, 70.0 + b, 20.0 + b / 2, 25.0 + b / 2, 15.0 + b / 3, 18.0 + b / 3)
    for b in (1, 8, 32, 128)
]


def _candidate(
    settings: PipelineSettings,
    scratch: Path,
    n: int,
    returns: list[float],
    latency: object = None,
    figures: bool = True,
) -> dict:
    """Candidate run `n` as the tasks before `promote` leave it (latency rows: `LATENCY`
    unless given; no curve, GIF or latency without `figures`), and what they hand on."""
    airflow = AirflowRun(DAG, f"manual__{n}", f"http://127.0.0.1:8080/dags/{DAG}/runs/{n}")
    run_id = get_or_create_candidate_run(airflow, 0, f"Pendulum-v1 seed {n}")
    client = MlflowClient()
    config = settings.sac_config(0)
    seeds = list(settings.eval_seeds)
    result = EvalResult(float(np.mean(returns)), float(np.std(returns)), returns, seeds)
    interval = reward_interval(returns, settings.confidence)
    gate = {
        EVAL_MEAN_RETURN: interval.mean,
        EVAL_RETURN_CI_LOW: interval.low,
        EVAL_RETURN_CI_HIGH: interval.high,
    }
    params = {**config.resolved(), "note": MARKUP}
    run_tags = {f"lineage.{key}": _text(value) for key, value in lineage.collect(config).items()}
    if not figures:
        run_tags[tags.VIDEO] = "none: record_video is off"
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, 0, settings.total_timesteps) for key, value in gate.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
        tags=[RunTag(key, value) for key, value in run_tags.items()],
    )
    client.log_dict(run_id, result.as_dict(), EVALUATION_ARTIFACT)
    if figures:
        _log_figures(client, run_id, scratch / f"run{n}", latency)
    registry = ModelRegistry(settings.model_name)
    version = registry.register(
        f"runs:/{run_id}/actor", None, run_id, airflow.key, {tags.SOURCE_RUN_ID: run_id}
    )
    registry.set_alias(CHALLENGER, version.version)
    return {
        "candidate": {"mlflow_run_id": run_id, "seed": 0, "returns": returns},
        "latency": {"speedup": LATENCY[0].speedup},
        "registered": {"model_name": registry.name, "version": str(version.version)},
    }


def _text(value: object) -> str:
    """A lineage value as training tags it."""
    return value if isinstance(value, str) else json.dumps(value)


def _log_figures(client: MlflowClient, run_id: str, files: Path, latency: object) -> None:
    """The reward curve, episode GIF and latency rows, small but as the tasks log them."""
    files.mkdir()
    curve = reward_curve_png(
        [200, 400, 600, 800], [-1500, -1100, -700, -300], files / CURVE_ARTIFACT
    )
    client.log_artifact(run_id, str(curve))
    frames = np.zeros((3, 64, 96, 3), dtype=np.uint8)  # a square crossing a dark frame
    for i, frame in enumerate(frames):
        frame[24:40, 16 + 24 * i : 32 + 24 * i] = 255
    iio.imwrite(files / "episode.gif", frames, extension=".gif")
    client.log_artifact(run_id, str(files / "episode.gif"), VIDEO_ARTIFACT.rsplit("/", 1)[0])
    client.set_tag(run_id, tags.VIDEO, VIDEO_ARTIFACT)
    rows = [row.as_dict() for row in LATENCY] if latency is None else latency
    client.log_dict(run_id, rows, LATENCY_ARTIFACT)


def _promote(settings: PipelineSettings, handed_on: dict) -> dict:
    """The promote task, given what its upstream tasks handed on."""
    return promote_candidate(
        settings, handed_on["candidate"], handed_on["latency"], handed_on["registered"]
    )


def _report(run_id: str, scratch: Path) -> Path:
    return download(run_id, REPORT_ARTIFACT, scratch / "downloaded")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile."""
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


VIEWER = """
const blob = new Blob([arguments[0]], {type: "text/html"});
const frame = document.createElement("iframe");
frame.sandbox = "allow-scripts";
frame.style = "width: 1200px; height: 900px";
frame.src = URL.createObjectURL(blob);
document.body.appendChild(frame);
"""
"""How MLflow's artifact viewer shows an HTML artifact (ShowArtifactHtmlView): the file as a
blob URL in an iframe sandboxed to scripts only."""
IMAGES_LOADED = """
const images = [...document.images];
return images.every(i => i.complete) ? images.map(i => [i.id, i.naturalWidth]) : null;
"""


def test_the_report_shows_the_decision_and_its_figures_in_a_browser(
    pipeline_store, tiny_settings, tmp_path, browser
) -> None:
    _promote(tiny_settings, _candidate(tiny_settings, tmp_path, 1, [-170.0, -160.0]))
    worse = _candidate(tiny_settings, tmp_path, 2, [-400.0, -380.0])
    outcome = _promote(tiny_settings, worse)["outcome"]
    reasons = outcome.removeprefix("rejected: ").split("; ")
    assert [r.split(" ", 1)[0] for r in reasons] == ["reward", "return"]  # gate, champion
    run_id = worse["candidate"]["mlflow_run_id"]
    assert MlflowClient().get_run(run_id).data.tags[tags.REPORT] == REPORT_ARTIFACT
    page = _report(run_id, tmp_path)
    html = page.read_text()

    browser.get("about:blank")  # as MLflow's viewer shows it: nothing beside the page
    browser.execute_script(VIEWER, html)
    browser.switch_to.frame(browser.find_element(By.TAG_NAME, "iframe"))
    loaded = WebDriverWait(browser, 10).until(lambda d: d.execute_script(IMAGES_LOADED))
    browser.switch_to.default_content()
    assert sorted(loaded) == [["curve-img", 700], ["episode-img", 96]]

    browser.get(page.as_uri())
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Rejected: v2 stays challenger" in text
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#reasons li")] == reasons
    assert "Champion of rlops-test-model now: v1." in text
    paired = browser.find_elements(By.CSS_SELECTOR, "#paired tr")
    assert [row.text for row in paired[1:]] == [
        "1000 -400.0 -170.0 -230.0",
        "1001 -380.0 -160.0 -220.0",
    ]
    difference = paired_difference([-400.0, -380.0], [-170.0, -160.0], tiny_settings.confidence)
    assert f"mean difference {difference}; its low end must be at least 0.0: failed" in text
    latency = browser.find_elements(By.CSS_SELECTOR, "#latency-table tr")
    assert [row.text for row in latency[:2]] == [
        "batch eager TorchScript speedup ONNX Runtime speedup",
        "1 61.0 / 71.0 20.5 / 25.5 x2.98 15.3 / 18.3 x3.98",
    ]
    assert len(latency) == 1 + len(LATENCY)
    assert MARKUP in text  # shown as text, not run: no script, no bold
    assert browser.execute_script("return window.pwned") is None
    assert not browser.find_elements(By.XPATH, "//b[text()='not bold']")
    assert f"{REPORT_ARTIFACT} of MLflow run {run_id}" in text
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, height + 100)
    save_screenshot(browser, "candidate-report.png")


def test_a_report_that_fails_costs_the_page_not_the_promotion(
    pipeline_store, tiny_settings, tmp_path, caplog
) -> None:
    handed_on = _candidate(tiny_settings, tmp_path, 1, [-170.0, -160.0], latency=[{"batch": 1}])
    with caplog.at_level(logging.ERROR, "rlops_airflow.candidate_report"):
        result = _promote(tiny_settings, handed_on)
    assert result["outcome"] == "promoted"
    assert str(ModelRegistry(tiny_settings.model_name).alias(CHAMPION).version) == "1"
    run = MlflowClient().get_run(handed_on["candidate"]["mlflow_run_id"])
    assert run.data.tags[tags.REPORT].startswith("failed: ValueError: benchmark/latency.json")
    assert run.info.status == "FINISHED"
    assert "candidate report NOT written" in caplog.text
    assert not MlflowClient().list_artifacts(run.info.run_id, "report")


def test_a_run_without_figures_still_gets_its_page(pipeline_store, tiny_settings, tmp_path) -> None:
    """What the run lacks, the page names instead of failing (video off, no benchmark yet)."""
    handed_on = _candidate(tiny_settings, tmp_path, 1, [-170.0, -160.0], figures=False)
    run_id = handed_on["candidate"]["mlflow_run_id"]
    client = MlflowClient()
    _promote(tiny_settings, handed_on)
    assert client.get_run(run_id).data.tags[tags.REPORT] == REPORT_ARTIFACT
    html = _report(run_id, tmp_path).read_text()
    for missing in (
        "No comparison: no champion yet: nothing to compare with.",
        "No latency table on this run (artifact benchmark/latency.json).",
        "No reward curve on this run (artifact reward_curve.png).",
        "No episode GIF: none: record_video is off.",
    ):
        assert missing in html
    assert "<img" not in html


def test_a_tag_becomes_a_link_only_when_it_is_a_web_address(
    pipeline_store, tiny_settings, tmp_path
) -> None:
    """Run tags are editable by anyone who may write the run: the Airflow link is shown as a
    link only for http(s); `javascript:` survives escaping, so it must not reach an href."""
    handed_on = _candidate(tiny_settings, tmp_path, 1, [-170.0, -160.0], figures=False)
    run_id = handed_on["candidate"]["mlflow_run_id"]
    MlflowClient().set_tag(run_id, tags.AIRFLOW_UI_URL, "javascript:window.pwned=true")
    _promote(tiny_settings, handed_on)
    html = _report(run_id, tmp_path).read_text()
    assert "javascript:" not in html
    assert 'href="http://127.0.0.1:8080' not in html
