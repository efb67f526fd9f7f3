"""Writes mlkube-dashboard.json: `python manifests/grafana/dashboard.py` after editing.

The dashboard is code so that panels stay uniform and the metric names in it can be
checked against the collectors (tests/unit/test_manifests_observability.py). Panels:
models by Ready condition, serving version over time, training outcomes and durations,
drift share per Monitor, predictor request rate, errors and latency quantiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MODEL_FILTER = 'namespace=~"$namespace", model_name=~"$model"'


def panel(
    title: str,
    exprs: list[tuple[str, str]],
    grid: tuple[int, int, int, int],
    kind: str = "timeseries",
    unit: str = "short",
    description: str = "",
) -> dict[str, Any]:
    x, y, w, h = grid
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "refresh": 2,
        "current": {"text": "All", "value": "$__all"},
    }


def dashboard() -> dict[str, Any]:
    rate = "[$__rate_interval]"
    panels = [
        panel(
            "Models by Ready condition",
            [('sum by (status) (mlkube_models{condition="Ready"})', "Ready={{status}}")],
            (0, 0, 6, 8),
            kind="piechart",
            description="Models whose Ready condition is True, False or Unknown.",
        ),
        panel(
            "Serving version",
            [(f"mlkube_serving_version{{{MODEL_FILTER}}}", "{{namespace}}/{{model_name}}")],
            (6, 0, 9, 8),
            description="A step is a promotion (or a rollback, when it goes down).",
        ),
        panel(
            "Training runs by outcome",
            [(f"sum by (outcome) (increase(mlkube_trainings_total{rate}))", "{{outcome}}")],
            (15, 0, 9, 8),
            kind="barchart",
        ),
        panel(
            "Training duration (p50, p95)",
            [
                (
                    f"histogram_quantile({q}, sum by (le, outcome) "
                    f"(rate(mlkube_training_duration_seconds_bucket{rate})))",
                    f"p{int(q * 100)} {{{{outcome}}}}",
                )
                for q in (0.5, 0.95)
            ],
            (0, 8, 12, 8),
            unit="s",
        ),
        panel(
            "Drift share per Monitor",
            [
                (
                    'mlkube_monitor_drift_share{namespace=~"$namespace"}',
                    "{{namespace}}/{{monitor}}",
                )
            ],
            (12, 8, 12, 8),
            unit="percentunit",
            description="Share of drifted features at the last check; alerts fire on dataset drift.",
        ),
        panel(
            "Predictor request rate",
            [
                (
                    f"sum by (model_name, model_version) "
                    f'(rate(mlkube_serve_requests_total{{model_name=~"$model"}}{rate}))',
                    "{{model_name}} v{{model_version}}",
                )
            ],
            (0, 16, 8, 8),
            unit="reqps",
        ),
        panel(
            "Predictor errors (4xx, 5xx)",
            [
                (
                    f"sum by (model_name, code) (rate(mlkube_serve_requests_total"
                    f'{{model_name=~"$model", code=~"[45].."}}{rate}))',
                    "{{model_name}} {{code}}",
                )
            ],
            (8, 16, 8, 8),
            unit="reqps",
        ),
        panel(
            "Predictor latency (p50, p95, p99)",
            [
                (
                    f"histogram_quantile({q}, sum by (le, model_name) "
                    f"(rate(mlkube_serve_request_duration_seconds_bucket"
                    f'{{model_name=~"$model"}}{rate})))',
                    f"p{int(q * 100)} {{{{model_name}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            (16, 16, 8, 8),
            unit="s",
        ),
        panel(
            "Operator reconciles and errors",
            [
                (f"sum by (kind) (rate(mlkube_reconciles_total{rate}))", "{{kind}}"),
                (f"sum by (kind) (rate(mlkube_reconcile_errors_total{rate}))", "errors {{kind}}"),
            ],
            (0, 24, 12, 8),
            unit="ops",
        ),
        panel(
            "Operator work queue",
            [("mlkube_work_queue_depth", "depth")],
            (12, 24, 12, 8),
        ),
        panel(
            "Live score from labels (overall and per slice)",
            [
                (
                    'mlkube_monitor_live_score{namespace=~"$namespace", model=~"$model"}',
                    "{{model}} v{{version}} {{slice}}",
                )
            ],
            (0, 32, 12, 8),
            unit="percentunit",
            description="Score of the serving version on labelled predictions of the "
            "Monitor's window (spec.performance); compare with its validation score.",
        ),
        panel(
            "Prediction drift and degraded live performance",
            [
                (
                    'mlkube_monitor_prediction_drift{namespace=~"$namespace"}',
                    "outputs drifted {{monitor}}",
                ),
                (
                    'mlkube_monitor_live_performance_degraded{namespace=~"$namespace"}',
                    "degraded {{monitor}}",
                ),
            ],
            (12, 32, 12, 8),
            description="1 while a Monitor's outputs drift from the validation predictions, "
            "or its live score breaks minScore/maxDrop.",
        ),
    ]
    for number, item in enumerate(panels, start=1):
        item["id"] = number
    return {
        "uid": "mlkube",
        "title": "mlkube",
        "tags": ["mlkube", "mlops"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-24h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "Prometheus", "value": "prometheus"},
                },
                variable("namespace", "label_values(mlkube_serving_version, namespace)"),
                variable("model", "label_values(mlkube_serving_version, model_name)"),
            ]
        },
        "panels": panels,
    }


def main() -> None:
    path = Path(__file__).with_name("mlkube-dashboard.json")
    path.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
