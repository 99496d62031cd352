"""The Grafana dashboard and the Prometheus alert rules that ship name only metrics (and labels)
that /metrics really exposes, and the rules pass `promtool check rules` where promtool is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from app.core import metrics
from tests.support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "integration-dispatch.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
             "gauge": ("",)}
_SELECTOR = re.compile(r"\b(dispatch_[a-z0-9_]+)\b(?:\{([^}]*)\})?")


def exposed() -> dict[str, set[str]]:
    """Every sample name /metrics can carry, with the labels it has (`le` on buckets)."""
    names: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for suffix in _SUFFIXES[obj._type]:
                names[obj._name + suffix] = set(obj._labelnames) | ({"le"} if suffix == "_bucket" else set())
    metrics.bind_in_flight(lambda: ["probe"])  # the daemon binds it at start
    for family in metrics.REGISTRY.collect():
        if family.name == "dispatch_jobs_in_flight":
            names[family.name] = {"integration"}
    return names


def expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query", "definition") and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def check(expr: str, names: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, selector in _SELECTOR.findall(expr):
        if name not in names:
            problems.append(f"{name} is not exposed")
            continue
        for label in re.findall(r"([a-z_]+)\s*[=!~]+", selector or ""):
            if label not in names[name]:
                problems.append(f"{name} has no label {label!r}")
    return problems


def test_dashboard__every_query_names_an_exposed_metric_and_label() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(expressions(dashboard["panels"])) + list(expressions(dashboard["templating"]))
    assert len(exprs) >= 15
    names = exposed()
    assert check('rate(dispatch_nope_total[5m]) + dispatch_queue_depth{state="open"}', names) == [
        "dispatch_nope_total is not exposed", "dispatch_queue_depth has no label 'state'"]  # the check bites
    assert [p for e in exprs for p in check(e, names)] == []
    used = {n for e in exprs for n, _ in _SELECTOR.findall(e)}
    for metric in ("dispatch_queue_depth", "dispatch_job_drift_seconds_bucket", "dispatch_alerts_open",
                   "dispatch_vendor_request_duration_seconds_bucket", "dispatch_integration_health",
                   "dispatch_job_pickup_latency_seconds_bucket", "dispatch_metrics_db_up"):
        assert metric in used, f"the dashboard has no panel over {metric}"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_alert_rules__parse_and_name_exposed_metrics() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"DispatchJobsFailing", "DispatchDriftHigh", "DispatchQueueGrowing",
                                           "DispatchSchedulerStalled", "DispatchMetricsDatabaseDown",
                                           "DispatchIntegrationUnhealthy"}
    names = exposed()
    assert [p for r in rules for p in check(r["expr"], names)] == []
    assert all(r["annotations"]["summary"] and r["labels"]["severity"] for r in rules)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_alert_rules__promtool_check_rules() -> None:
    run = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
