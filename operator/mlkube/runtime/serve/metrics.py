"""Prometheus collectors of the model server, module level with fixed label names.

Every series carries ``model_name`` and ``model_version`` so dashboards can compare
versions during a rollout. The default registry also exports process and Python
metrics (CPU, memory, file descriptors, GC). ``ModelMetrics`` resolves the labelled
children once per model so the request path only increments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, cast

import numpy as np
from numpy.typing import NDArray
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# The _created series double the scrape size for nothing a dashboard here uses.
cast(Callable[[], None], disable_created_metrics)()

MODEL_LABELS: Final = ("model_name", "model_version")

REQUESTS = Counter(
    "mlkube_serve_requests",
    "HTTP requests handled, by route and status code.",
    [*MODEL_LABELS, "route", "code"],
)
LATENCY = Histogram(
    "mlkube_serve_request_duration_seconds",
    "Time from the request's arrival to its response, by route.",
    [*MODEL_LABELS, "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SIZE = Histogram(
    "mlkube_serve_batch_size",
    "Rows per successful prediction request.",
    MODEL_LABELS,
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 10000, 100000),
)
MODEL_CALL_ROWS = Histogram(
    "mlkube_serve_model_call_rows",
    "Rows per model call; adaptive batching coalesces concurrent requests into one call.",
    MODEL_LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 5000, 10000, 100000),
)
MODEL_CALL_REQUESTS = Histogram(
    "mlkube_serve_model_call_requests",
    "Requests answered by one model call (1 when nothing was coalesced).",
    MODEL_LABELS,
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
PREDICTIONS = Counter(
    "mlkube_serve_predictions",
    'Predicted rows, by predicted class (regression models count under class "").',
    [*MODEL_LABELS, "class"],
)
IN_FLIGHT = Gauge(
    "mlkube_serve_in_flight_requests", "Requests being handled right now.", MODEL_LABELS
)
MODEL_INFO = Gauge(
    "mlkube_serve_model_info",
    "Always 1; the served model's identity and how it predicts.",
    [*MODEL_LABELS, "estimator", "threading"],
)
LOG_ROWS = Counter(
    "mlkube_serve_inference_log_rows",
    "Inference-log rows written to the store.",
    MODEL_LABELS,
)
LOG_DROPPED = Counter(
    "mlkube_serve_inference_log_dropped_rows",
    "Inference-log rows dropped: the queue was full, the store refused the write, or the "
    "rows would have outgrown the request's log budget (a multiple of its body size).",
    [*MODEL_LABELS, "reason"],
)
LOG_ERRORS = Counter(
    "mlkube_serve_inference_log_write_errors",
    "Failed writes or deletions in the inference-log directory, or failed uploads of "
    "inference-log objects to S3 (each attempt; retried a bounded number of times).",
    MODEL_LABELS,
)


class ModelMetrics:
    """The labelled children for one served model, resolved once."""

    def __init__(self, name: str, version: str) -> None:
        self._labels = (name, version)
        self._requests: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self._classes: dict[Any, Any] = {}
        self.batch_size = BATCH_SIZE.labels(name, version)
        self.call_rows = MODEL_CALL_ROWS.labels(name, version)
        self.call_requests = MODEL_CALL_REQUESTS.labels(name, version)
        self.in_flight = IN_FLIGHT.labels(name, version)
        self.log_rows = LOG_ROWS.labels(name, version)
        self.log_dropped_full = LOG_DROPPED.labels(name, version, "queue_full")
        self.log_dropped_write = LOG_DROPPED.labels(name, version, "write_failed")
        self.log_dropped_budget = LOG_DROPPED.labels(name, version, "over_budget")
        self.log_errors = LOG_ERRORS.labels(name, version)

    def info(self, estimator: str, threading: str) -> None:
        MODEL_INFO.labels(*self._labels, estimator, threading).set(1)

    def request_done(self, route: str, code: int, seconds: float) -> None:
        key = (route, code)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = REQUESTS.labels(*self._labels, route, str(code))
        counter.inc()
        histogram = self._latency.get(route)
        if histogram is None:
            histogram = self._latency[route] = LATENCY.labels(*self._labels, route)
        histogram.observe(seconds)

    def model_call(self, rows: int, requests: int) -> None:
        """One model call of ``rows`` rows that answered ``requests`` requests."""
        self.call_rows.observe(rows)
        self.call_requests.observe(requests)

    def predicted(self, labels: NDArray[Any], is_classifier: bool) -> None:
        rows = len(labels)
        self.batch_size.observe(rows)
        if not is_classifier:
            self._class_counter("").inc(rows)
        elif rows == 1:
            self._class_counter(labels[0]).inc()
        else:
            values, counts = np.unique(labels, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                self._class_counter(value).inc(count)

    def _class_counter(self, label: Any) -> Any:
        counter = self._classes.get(label)
        if counter is None:
            counter = self._classes[label] = PREDICTIONS.labels(*self._labels, str(label))
        return counter


def exposition() -> tuple[bytes, bytes]:
    """The Prometheus text for ``/metrics`` and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode()
