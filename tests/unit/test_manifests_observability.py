"""Alerts and dashboard speak the metrics the code exports, in valid PromQL.

Every expression of the PrometheusRule and of the Grafana dashboard is parsed with a
PromQL parser; every metric it selects must be a series the operator's or the model
server's collectors export (counters as ``_total``, histograms as ``_bucket``/``_sum``/
``_count``), and every label it matches on must be one of the collector's labels or a
target label Prometheus adds. The dashboard JSON must be what dashboard.py writes, and
each alert the issue names must exist.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import mlkube.controller.metrics
import mlkube.runtime.serve.metrics
from harness.controlplane import REPO
from mlkube.runtime.serve.metrics import MODEL_LABELS, Family

PROMETHEUS = REPO / "manifests" / "prometheus"
GRAFANA = REPO / "manifests" / "grafana"
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Series name -> label names, for the collectors of the operator and the server."""
    series: dict[str, set[str]] = {"up": {"job", "instance"}}
    for module in (mlkube.controller.metrics, mlkube.runtime.serve.metrics):
        for collector in vars(module).values():
            if isinstance(collector, MetricWrapperBase):
                name, kind, labels = collector._name, collector._type, set(collector._labelnames)
            elif isinstance(collector, Family):
                name, kind = collector.name, collector.kind
                labels = {*MODEL_LABELS, *collector.labels}
            else:
                continue
            for suffix in SUFFIXES[kind]:
                extra = {"le"} if suffix == "_bucket" else set()
                series[name + suffix] = labels | extra
    return series


def selectors(node: Any) -> Iterator[Any]:
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from selectors(child)
    for child in getattr(node, "args", None) or []:
        yield from selectors(child)


def rule_exprs() -> list[str]:
    rule = next(
        d
        for d in yaml.safe_load_all((PROMETHEUS / "rules.yaml").read_text())
        if d["kind"] == "PrometheusRule"
    )
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "mlkube-dashboard.json").read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [
        target["expr"].replace("$__rate_interval", "5m")
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]


@pytest.mark.parametrize("expr", rule_exprs() + dashboard_exprs())
def test_expression_parses_and_uses_exported_series_and_labels(expr: str) -> None:
    series = exported()
    found = list(selectors(promql_parser.parse(expr)))
    assert found, expr
    for selector in found:
        assert selector.name in series, f"{selector.name} is not exported (in {expr})"
        for matcher in selector.matchers.matchers:
            assert matcher.name in series[selector.name] | TARGET_LABELS, (
                selector.name,
                matcher.name,
            )


def test_alerts_the_issue_asks_for_exist() -> None:
    rule = next(d for d in yaml.safe_load_all((PROMETHEUS / "rules.yaml").read_text()))
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert alerts == {
        "MlkubeOperatorDown",
        "MlkubeTrainingFailed",
        "MlkubeModelNotReady",
        "MlkubeDriftDetected",
        "MlkubeLiveDataQuality",
        "MlkubeLivePerformanceDegraded",
        "MlkubePredictionDrift",
    }


def test_operator_down_matches_the_metrics_service_job_name() -> None:
    service = yaml.safe_load((PROMETHEUS / "service.yaml").read_text())
    (expr,) = [e for e in rule_exprs() if e.startswith("absent(up")]
    assert f'job="{service["metadata"]["name"]}"' in expr


def test_dashboard_json_is_what_dashboard_py_writes() -> None:
    spec = importlib.util.spec_from_file_location("dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.dashboard() == dashboard(), "run python manifests/grafana/dashboard.py"


def test_dashboard_covers_the_panels_the_issue_names() -> None:
    titles = " | ".join(panel["title"].lower() for panel in dashboard()["panels"])
    for words in (
        "ready condition",
        "serving version",
        "training duration",
        "drift",
        "latency",
        "request rate",
    ):
        assert words in titles, words
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for variable in dashboard()["templating"]["list"][1:]:
        (name,) = re.findall(r"label_values\((\w+),", variable["query"]["query"])
        assert name in exported()
