"""The provisioned Grafana dashboard queries only series the policy server exports.

Every panel's PromQL goes through a small lexer that finds the metric names it selects and the
labels it matches, groups by or shows in a legend; each is checked against the series a real
`ServingMetrics` registry exposes once every family holds a sample. A renamed metric or label
in metrics.py, or a typo in the JSON, fails here naming the panel, instead of an empty graph.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from prometheus_client import Counter, Gauge, Histogram, Info, Summary
from prometheus_client.metrics import MetricWrapperBase

from rl_core.envs.spec import EnvSpec
from rlops_registry import tags as tag_names
from rlops_registry.served_episodes import EpisodeLog
from rlops_serving.metrics import ServingMetrics
from rlops_serving.policy import ServedPolicy

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "rlops-serving.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "rlops.yml"

TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<range>\[[^\]]*\])
    |(?P<duration>(?:\d+(?:ms|[smhdwy]))+\b)
    |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<variable>\$\{?\w+\}?)
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){},])""",
    re.VERBOSE,
)
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
FUNCTIONS = {
    # aggregations
    *("sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile"),
    *("count_values", "group"),
    # functions the dashboard may reasonably use
    *("rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes"),
    *("histogram_quantile", "histogram_count", "histogram_sum", "histogram_fraction"),
    *("avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time"),
    *("last_over_time", "quantile_over_time", "abs", "clamp_min", "clamp_max", "round"),
    *("scalar", "vector", "time", "timestamp", "absent", "label_replace", "label_join"),
}
LEGEND_LABEL = re.compile(r"\{\{\s*([^}\s]+)\s*\}\}")


@dataclass
class Query:
    """What one PromQL expression refers to: each selected series with its matcher labels, and
    the labels it groups or matches on."""

    selectors: list[tuple[str, set[str]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[pos:]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            out.append((kind, match.group()))
        pos = match.end()
    return out


def label_list(toks: list[tuple[str, str]], i: int) -> tuple[list[str], int]:
    """The labels of a `(a, b)` list at toks[i], and the index after its `)`."""
    if toks[i] != ("op", "("):
        return [], i  # group_left without a list
    names, i = [], i + 1
    while toks[i] != ("op", ")"):
        if toks[i][0] == "ident":
            names.append(toks[i][1])
        i += 1
    return names, i + 1


def matchers(toks: list[tuple[str, str]], i: int, expr: str) -> tuple[set[str], int]:
    """The label names of a `{label op "value", ...}` selector at toks[i]."""
    names, i = set(), i + 1
    while toks[i] != ("op", "}"):
        kind, text = toks[i]
        if kind == "ident":
            if text == "__name__":
                raise ValueError(f"{expr!r}: select the metric by name, not by __name__")
            names.add(text)
        i += 1
    return names, i + 1


def parse(expr: str) -> Query:
    """The series and labels `expr` refers to; an unknown function name is an error."""
    toks = [*tokens(expr), ("end", "")]
    query, i = Query(), 0
    while toks[i][0] != "end":
        kind, text = toks[i]
        following = toks[i + 1]
        if kind == "op" and text == "{":
            raise ValueError(f"{expr!r}: a selector without a metric name")
        if kind != "ident" or text in KEYWORDS:
            i += 1
        elif text in GROUPING:
            names, i = label_list(toks, i + 1)
            query.grouping.update(names)
        elif following in (("op", "("), ("ident", "by"), ("ident", "without")):
            if text not in FUNCTIONS:
                raise ValueError(f"{expr!r}: {text}() is not a PromQL function")
            i += 1
        else:
            labels: set[str] = set()
            i += 1
            if toks[i] == ("op", "{"):
                labels, i = matchers(toks, i, expr)
            query.selectors.append((text, labels))
    return query


def exposed_series(metrics: ServingMetrics) -> dict[str, set[str]]:
    """Each series name the registry exposes (what Prometheus stores: `_total`, `_bucket`,
    `_info`, ...), with the label names its samples carry."""
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        assert family.samples, f"{family.name} has no sample: the fixture must touch it"
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def touch_every_family(metrics: ServingMetrics) -> None:
    """One sample in every family, through the server's own methods where it has them (the
    info metrics get their real keys), then one in each labelled family left empty."""
    policy = ServedPolicy(
        "rlops-sac", "3", EnvSpec("Pendulum-v1"), 3, 1, "onnx", act=lambda rows: rows
    )
    metrics.served("champion", policy)
    metrics.version_tags("champion", {tag_names.ONLINE_RETURN: "-150", tag_names.REWARD: "-140"})
    unreachable = MlflowClient(tracking_uri="http://127.0.0.1:9")  # pending() never calls it
    metrics.episode_log(EpisodeLog("rlops-sac", "test", client=unreachable))
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase) or isinstance(metric, Info):
            continue
        child = metric.labels(*("x" for _ in metric._labelnames)) if metric._labelnames else metric
        if isinstance(child, Histogram | Summary):
            child.observe(1.0)
        elif isinstance(child, Counter):
            child.inc()
        elif isinstance(child, Gauge):
            child.set(1.0)


@pytest.fixture(scope="module")
def series() -> dict[str, set[str]]:
    metrics = ServingMetrics()
    touch_every_family(metrics)
    return exposed_series(metrics)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def problems(dashboard: dict[str, Any], series: dict[str, set[str]]) -> list[str]:
    """Every reference of a panel to a series or label the server does not export."""
    found = []
    for panel, target in targets(dashboard):
        where = f"panel {panel['title']!r} ({target['refId']})"
        query = parse(target["expr"])
        known: set[str] = set()
        for name, labels in query.selectors:
            if name not in series:
                found.append(f"{where} queries {name}, which the server does not export")
                continue
            known |= series[name]
            found += [
                f"{where} matches label {label!r} of {name}, which has {sorted(series[name])}"
                for label in sorted(labels - series[name])
            ]
        if not all(name in series for name, _ in query.selectors):
            continue  # labels of a series that does not exist: its name is the problem
        shown = set(LEGEND_LABEL.findall(target.get("legendFormat", "")))
        for kind, labels in (("groups by", query.grouping), ("shows in its legend", shown)):
            found += [
                f"{where} {kind} label {label!r}, which none of its series has: {sorted(known)}"
                for label in sorted(labels - known)
            ]
    return found


def test_every_panel_queries_only_exported_series_and_labels(
    dashboard: dict[str, Any], series: dict[str, set[str]]
) -> None:
    assert problems(dashboard, series) == []


def test_the_dashboard_shows_what_the_operator_asked_for(dashboard: dict[str, Any]) -> None:
    """Reward and length by version, latency quantiles, RPS, error rate, canary share."""
    exprs = " ".join(target["expr"] for _, target in targets(dashboard))
    for needed in (
        "sum by (version) (rate(rlops_serving_episode_return_sum",
        "sum by (version) (rate(rlops_serving_episode_length_sum",
        "rlops_serving_model_online_mean_return",
        "rlops_serving_model_recorded_reward",
        "histogram_quantile(0.5, sum by (le, version)",
        "histogram_quantile(0.95, sum by (le, version)",
        "histogram_quantile(0.99, sum by (le, version)",
        "histogram_quantile(0.99, sum by (le, path)",
        "rate(rlops_serving_requests_total",
        "sum by (path, status) (rate(rlops_serving_errors_total",
        'status=~"401|403|429"',
        "sum by (alias) (rate(rlops_serving_observations_total",
        "rlops_serving_episode_reports_pending",
        "rlops_serving_model_runtime_info",
    ):
        assert needed in exprs


def test_panels_have_titles_unique_ids_and_the_provisioned_datasource(
    dashboard: dict[str, Any],
) -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    prometheus = {"type": "prometheus", "uid": provisioned[0]["uid"]}
    assert [source["type"] for source in provisioned] == ["prometheus"]
    assert dashboard["uid"] and isinstance(dashboard["version"], int) and dashboard["version"] > 0
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel.get("title", "").strip(), f"panel {panel['id']} has no title"
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        assert panel["datasource"] == prometheus, panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == prometheus, f"{panel['title']} {target['refId']}"


def test_grafana_loads_the_dashboard_from_the_mounted_folder() -> None:
    """The provider's folder is where compose mounts docker/grafana/dashboards, and the rate
    interval Grafana assumes is Prometheus' scrape interval."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    folder = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]["options"]["path"]
    assert mounts["./docker/grafana/dashboards"] == folder
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"
    scrape = yaml.safe_load((REPO / "docker" / "prometheus" / "prometheus.yml").read_text())
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]


def test_series_follow_the_exposition_rules_of_each_type(series: dict[str, set[str]]) -> None:
    """What the checks compare against: counters only as _total, histograms and summaries as
    _sum/_count (buckets with le), info metrics as _info with their keys."""
    assert "rlops_serving_requests_total" in series and "rlops_serving_requests" not in series
    assert "le" in series["rlops_serving_request_duration_seconds_bucket"]
    assert "le" not in series["rlops_serving_request_duration_seconds_count"]
    assert "rlops_serving_request_duration_seconds" not in series
    assert (
        "rlops_serving_episode_return_sum" in series
        and "rlops_serving_episode_return" not in series
    )
    assert series["rlops_serving_model_runtime_info"] == {"alias", "version", "runtime"}
    assert series["rlops_serving_model_info"] == {"alias", "name", "version"}
    assert series["rlops_serving_episode_reports_pending"] == set()


def test_the_parser_reads_selectors_grouping_and_functions() -> None:
    query = parse(
        'histogram_quantile(0.99, sum by (le, path) (rate(a_bucket{path="/x",status!~"4.."}'
        "[$__rate_interval] offset 5m))) / ignoring (alias) group_left b_total > bool 1e-3"
    )
    assert query.selectors == [("a_bucket", {"path", "status"}), ("b_total", set())]
    assert query.grouping == {"le", "path", "alias"}
    with pytest.raises(ValueError, match="histogram_quantil\\(\\) is not a PromQL function"):
        parse("histogram_quantil(0.5, a_bucket)")


MUTATIONS = {
    "metric typo": (
        "rlops_serving_requests_total",
        "rlops_serving_request_total",
        "queries rlops_serving_request_total,",
    ),
    "counter without _total": (
        "rlops_serving_errors_total",
        "rlops_serving_errors",
        "queries rlops_serving_errors,",
    ),
    "histogram without _bucket": (
        "rlops_serving_request_duration_seconds_bucket",
        "rlops_serving_request_duration_seconds",
        "queries rlops_serving_request_duration_seconds,",
    ),
    "bucket of a summary": (
        "rlops_serving_episode_return_sum",
        "rlops_serving_episode_return_bucket",
        "queries rlops_serving_episode_return_bucket,",
    ),
    "label typo in by": ("by (le, version)", "by (le, versions)", "groups by label 'versions'"),
    "label of another metric": (
        '{path="/v1/act"}',
        '{alias="/v1/act"}',
        "matches label 'alias' of rlops_serving_requests_total",
    ),
    "legend label no series has": (
        "{{name}}",
        "{{model}}",
        "shows in its legend label 'model'",
    ),
}


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_a_broken_expression_fails_naming_panel_and_metric(
    dashboard: dict[str, Any], series: dict[str, set[str]], mutation: str
) -> None:
    old, new, message = MUTATIONS[mutation]
    broken = copy.deepcopy(dashboard)
    panel, target = next((p, t) for p, t in targets(broken) if old in t["expr"] + t["legendFormat"])
    key = "expr" if old in target["expr"] else "legendFormat"
    target[key] = target[key].replace(old, new, 1)
    found = problems(broken, series)
    assert len(found) == 1, found
    assert found[0].startswith(f"panel {panel['title']!r} ({target['refId']})"), found
    assert message in found[0], found
