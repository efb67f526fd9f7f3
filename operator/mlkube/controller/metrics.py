"""Prometheus collectors of the operator (module level, fixed label names, as KServe's)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

RECONCILES: Final = Counter(
    "mlkube_reconciles_total", "Reconciles run, by kind of resource.", ["kind"]
)
RECONCILE_ERRORS: Final = Counter(
    "mlkube_reconcile_errors_total", "Reconciles that raised, by kind of resource.", ["kind"]
)
RECONCILE_SECONDS: Final = Histogram(
    "mlkube_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MODELS_BY_CONDITION: Final = Gauge(
    "mlkube_models",
    "Models by the status of their Ready condition.",
    ["condition", "status"],
)
TRAININGS: Final = Counter(
    "mlkube_trainings_total", "Finished training runs, by outcome.", ["outcome"]
)
TRAINING_SECONDS: Final = Histogram(
    "mlkube_training_duration_seconds",
    "Duration of finished training runs (TrainingJob start to completion).",
    ["outcome"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
SERVING_VERSION: Final = Gauge(
    "mlkube_serving_version",
    "Version each Model serves.",
    ["namespace", "model_name"],
)
QUEUE_DEPTH: Final = Gauge("mlkube_work_queue_depth", "Keys waiting to be reconciled.")
LEADER: Final = Gauge(
    "mlkube_leader", "1 while this replica holds the leader Lease and reconciles, else 0."
)
# From Monitor.status (written by the drift checker), so alerts and dashboards need no
# access to the store: refreshed with the other gauges, series of deleted Monitors dropped.
DRIFT_SHARE: Final = Gauge(
    "mlkube_monitor_drift_share",
    "Share of drifted features at a Monitor's last check.",
    ["namespace", "monitor", "model_name"],
)
DATASET_DRIFT: Final = Gauge(
    "mlkube_monitor_dataset_drift",
    "1 when a Monitor's last check found dataset drift, else 0.",
    ["namespace", "monitor", "model_name"],
)
LIVE_SCORE: Final = Gauge(
    "mlkube_monitor_live_score",
    "Live score of the serving version from ground-truth labels, overall and per slice.",
    ["namespace", "monitor", "model", "version", "slice"],
)
LIVE_DEGRADED: Final = Gauge(
    "mlkube_monitor_live_performance_degraded",
    "1 when a Monitor's last live-performance verdict was degraded, else 0.",
    ["namespace", "monitor", "model"],
)
PREDICTION_DRIFT: Final = Gauge(
    "mlkube_monitor_prediction_drift",
    "1 when the model's outputs drifted from its validation predictions, else 0.",
    ["namespace", "monitor", "model"],
)
DATA_QUALITY_VIOLATIONS: Final = Gauge(
    "mlkube_monitor_data_quality_violations",
    "Data-quality findings (missing values, unseen categories, …) at a Monitor's last check.",
    ["namespace", "monitor", "model_name"],
)
