"""Prometheus metrics of the model server, with fixed label names.

Every series carries ``model_name`` and ``model_version`` so dashboards can compare
versions during a rollout. The default registry also exports process and Python
metrics (CPU, memory, file descriptors, GC).

Why two kinds: the series a request touches (requests, latency, batch sizes, predicted
classes, in-flight) are updated only on the worker's event loop, so they are plain
counts in ``_Series`` exported by one collector at scrape time. prometheus-client's own
metric objects take a lock per increment, and a prediction request made about twelve of
them: ~15% of its server CPU (issue 16). The inference-log series are updated by the
log's writer thread, so they stay prometheus-client ``Counter``s. ``ModelMetrics``
resolves one model's series once so the request path only adds.
"""

from __future__ import annotations

import collections
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, cast

import numpy as np
from numpy.typing import NDArray
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

_go_float = cast(
    Callable[[float], str], floatToGoString
)  # a bucket's "le", as prometheus writes it
# The _created series double the scrape size for nothing a dashboard here uses.
cast(Callable[[], None], disable_created_metrics)()

MODEL_LABELS: Final = ("model_name", "model_version")


@dataclass(frozen=True)
class Family:
    """One loop-owned metric: its name (counters without ``_total``), type and labels
    beyond ``MODEL_LABELS``."""

    name: str
    kind: str  # counter, histogram or gauge
    documentation: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


REQUESTS = Family(
    "mlkube_serve_requests",
    "counter",
    "HTTP requests handled, by route and status code.",
    ("route", "code"),
)
LATENCY = Family(
    "mlkube_serve_request_duration_seconds",
    "histogram",
    "Time from the request's arrival to its response, by route.",
    ("route",),
    (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SIZE = Family(
    "mlkube_serve_batch_size",
    "histogram",
    "Rows per successful prediction request.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 10000, 100000),
)
MODEL_CALL_ROWS = Family(
    "mlkube_serve_model_call_rows",
    "histogram",
    "Rows per model call; adaptive batching coalesces concurrent requests into one call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 5000, 10000, 100000),
)
MODEL_CALL_REQUESTS = Family(
    "mlkube_serve_model_call_requests",
    "histogram",
    "Requests answered by one model call (1 when nothing was coalesced).",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
PREDICTIONS = Family(
    "mlkube_serve_predictions",
    "counter",
    'Predicted rows, by predicted class (regression models count under class "").',
    ("class",),
)
IN_FLIGHT = Family("mlkube_serve_in_flight_requests", "gauge", "Requests being handled right now.")
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


class _Histogram:
    """Counts per bucket (the last is +Inf) and the sum; ``observe`` is one bisect."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((_go_float(bound), float(cumulative)))
        family.add_metric(labels, buckets, self.total)


@dataclass
class _Series:
    """One model version's loop-owned counts (shared by every app serving it)."""

    requests: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    latency: collections.defaultdict[str, _Histogram] = field(
        default_factory=lambda: collections.defaultdict(lambda: _Histogram(LATENCY.buckets))
    )
    batch_size: _Histogram = field(default_factory=lambda: _Histogram(BATCH_SIZE.buckets))
    call_rows: _Histogram = field(default_factory=lambda: _Histogram(MODEL_CALL_ROWS.buckets))
    call_requests: _Histogram = field(
        default_factory=lambda: _Histogram(MODEL_CALL_REQUESTS.buckets)
    )
    predictions: collections.Counter[str] = field(default_factory=collections.Counter)
    in_flight: Callable[[], int] = lambda: 0


_SERIES: dict[tuple[str, str], _Series] = {}


class _LoopCollector:
    """Exports every ``_Series`` at scrape time (``/metrics`` is served on the same loop)."""

    def collect(self) -> Iterator[Metric]:
        models = list(_SERIES.items())
        yield _counter(REQUESTS, ((m, k, v) for m, s in models for k, v in s.requests.items()))
        latency = _family(LATENCY)
        for model, series in models:
            for route, histogram in series.latency.items():
                histogram.add_to(latency, [*model, route])
        yield latency
        for spec, attribute in (
            (BATCH_SIZE, "batch_size"),
            (MODEL_CALL_ROWS, "call_rows"),
            (MODEL_CALL_REQUESTS, "call_requests"),
        ):
            family = _family(spec)
            for model, series in models:
                getattr(series, attribute).add_to(family, list(model))
            yield family
        yield _counter(
            PREDICTIONS, ((m, (c,), n) for m, s in models for c, n in s.predictions.items())
        )
        gauge = _family(IN_FLIGHT)
        for model, series in models:
            gauge.add_metric(list(model), series.in_flight())
        yield gauge


_FAMILY_TYPES: Final = {
    "counter": CounterMetricFamily,
    "histogram": HistogramMetricFamily,
    "gauge": GaugeMetricFamily,
}


def _family(spec: Family) -> Any:
    return _FAMILY_TYPES[spec.kind](
        spec.name, spec.documentation, labels=[*MODEL_LABELS, *spec.labels]
    )


def _counter(spec: Family, values: Iterator[tuple[tuple[str, str], tuple[str, ...], int]]) -> Any:
    family = _family(spec)
    for model, labels, value in values:
        family.add_metric([*model, *labels], value)
    return family


REGISTRY.register(_LoopCollector())


class ModelMetrics:
    """One served model's series, resolved once; call only from the event loop (the
    inference-log counters excepted, which are thread-safe)."""

    def __init__(self, name: str, version: str) -> None:
        self._labels = (name, version)
        self._series = _SERIES.setdefault(self._labels, _Series())
        self.log_rows = LOG_ROWS.labels(name, version)
        self.log_dropped_full = LOG_DROPPED.labels(name, version, "queue_full")
        self.log_dropped_write = LOG_DROPPED.labels(name, version, "write_failed")
        self.log_dropped_budget = LOG_DROPPED.labels(name, version, "over_budget")
        self.log_errors = LOG_ERRORS.labels(name, version)

    def info(self, estimator: str, threading: str) -> None:
        MODEL_INFO.labels(*self._labels, estimator, threading).set(1)

    def watch_in_flight(self, read: Callable[[], int]) -> None:
        """The in-flight gauge reads ``read()`` at scrape time."""
        self._series.in_flight = read

    def request_done(self, route: str, code: int, seconds: float) -> None:
        series = self._series
        series.requests[route, str(code)] += 1
        series.latency[route].observe(seconds)

    def model_call(self, rows: int, requests: int) -> None:
        """One model call of ``rows`` rows that answered ``requests`` requests."""
        self._series.call_rows.observe(rows)
        self._series.call_requests.observe(requests)

    def predicted(self, labels: NDArray[Any], is_classifier: bool) -> None:
        rows = len(labels)
        series = self._series
        series.batch_size.observe(rows)
        counts = series.predictions
        if not is_classifier:
            counts[""] += rows
        elif rows == 1:
            counts[str(labels[0])] += 1
        else:
            values, numbers = np.unique(labels, return_counts=True)
            counts.update(
                {str(v): n for v, n in zip(values.tolist(), numbers.tolist(), strict=True)}
            )


def exposition() -> tuple[bytes, bytes]:
    """The Prometheus text for ``/metrics`` and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST.encode()
