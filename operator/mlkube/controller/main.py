"""``mlkube operator``: kopf watches, the work queue, metrics, liveness, graceful shutdown.

kopf is used for what it is good at (watch streams with reconnects, login, liveness,
signal handling) through ``@kopf.on.event`` handlers only. Those handlers keep no
progress and need no finalizer, so kopf writes nothing to users' objects: no
``kopf.zalando.org`` annotations, no finalizers, no ``status.kopf`` (docs/gitops.md: GitOps
tools must see no drift). The handlers record bodies in the cache and enqueue keys; the
reconcilers (``handlers/``) run from the work queue.

Several replicas: with ``MLKUBE_LEADER_ELECTION`` (on in ``manifests/``) only the holder of
a Lease runs the reconcile workers (``leader.py``); the others watch, keep a warm cache and
a healthy liveness endpoint, and wait. kopf runs ``standalone`` (its peering needs CRDs of
its own and pauses watches instead of electing). Should two act anyway for a moment (a
holder cut off mid-request), they duplicate work but not objects: every child has a
deterministic name and versions are allocated with a resourceVersion precondition.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import aiohttp
import kopf

from mlkube.api import names
from mlkube.api.conditions import READY, get_condition
from mlkube.api.performance import PerformanceVerdict
from mlkube.api.status import Verdict
from mlkube.controller import metrics
from mlkube.controller.children import Controller
from mlkube.controller.handlers.model import reconcile_model
from mlkube.controller.handlers.monitor import reconcile_monitor
from mlkube.controller.handlers.trainingjob import reconcile_training_job
from mlkube.controller.informer import Key, WorkQueue
from mlkube.controller.kube import ApiError, Kube
from mlkube.controller.leader import LeaderElector, LeaseConfig
from mlkube.controller.settings import OperatorSettings, SettingsError
from mlkube.controller.spec import model_ref
from mlkube.controller.watches import WATCHES, labels_of, new_cache

log = logging.getLogger("mlkube.controller")

Reconcile = Callable[[Controller, str, str], Awaitable[float | None]]
RECONCILERS: Final[dict[str, Reconcile]] = {
    "Model": reconcile_model,
    "TrainingJob": reconcile_training_job,
    "Monitor": reconcile_monitor,
}


class Operator:
    """The state of one operator process: cache, queue, API client."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.cache = new_cache()
        self.connection: Any = None
        self.ctl: Controller | None = None
        self.kube: Kube | None = None
        self.elector: LeaderElector | None = None
        self.leading = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, kopf_settings: kopf.OperatorSettings) -> None:
        self.connection = kopf.login_with_service_account(
            settings=kopf_settings
        ) or kopf.login_with_kubeconfig(settings=kopf_settings)
        if self.connection is None:
            raise kopf.PermanentError("no credentials: neither a service account nor KUBECONFIG")
        kube = self.kube = Kube.from_connection(self.connection)
        self.ctl = Controller(kube=kube, cache=self.cache, settings=self.settings)
        if self.settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.settings.metrics_port)
        self._tasks.append(asyncio.create_task(self._gauges()))
        if not self.settings.leader_election:
            await self.start_leading()
            return
        config = LeaseConfig(
            namespace=self.settings.leader_election_namespace,
            name=self.settings.leader_election_name,
            identity=f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
            duration=self.settings.lease_duration_seconds,
            renew_period=self.settings.renew_period_seconds,
        )
        self.elector = LeaderElector(kube, config, self.start_leading, self.stop_leading)
        self._tasks.append(asyncio.create_task(self.elector.run()))

    async def start_leading(self) -> None:
        """Workers on, everything watched queued; what an earlier term applied is forgotten."""
        assert self.ctl is not None
        self.ctl.applied.clear()
        self.ctl.creating.clear()
        self.ctl.queue = WorkQueue(
            self.dispatch,
            self.settings.workers,
            expected=(ApiError, aiohttp.ClientError, TimeoutError),
        )
        self.ctl.queue.start()
        self.leading = True
        metrics.LEADER.set(1)
        for kind in RECONCILERS:
            for body in self.cache.all(kind):
                meta = body["metadata"]
                self.ctl.enqueue(kind, str(meta.get("namespace") or ""), str(meta["name"]))

    async def stop_leading(self) -> None:
        """Cancels the workers (reconciles in flight included); watches keep running."""
        self.leading = False
        metrics.LEADER.set(0)
        metrics.SERVING_VERSION.clear()
        if self.ctl is not None and self.ctl.queue is not None:
            queue, self.ctl.queue = self.ctl.queue, None
            await queue.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ctl is not None:
            if self.ctl.queue is not None:
                await self.ctl.queue.stop()
            if self.elector is not None:
                await self.elector.release()
        if self.kube is not None:
            await self.kube.close()

    async def dispatch(self, key: Key) -> float | None:
        kind, namespace, name = key
        assert self.ctl is not None
        metrics.RECONCILES.labels(kind=kind).inc()
        started = time.perf_counter()
        try:
            return await RECONCILERS[kind](self.ctl, namespace, name)
        except Exception:
            metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.perf_counter() - started)

    def observe(self, kind: str, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A watch event: keep the body, enqueue what depends on it."""
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if not name or self.ctl is None:
            return
        fresh = self.cache.get(kind, namespace, name) is None
        if event_type == "DELETED":
            self.cache.forget(kind, namespace, name)
        elif not self.cache.store(kind, obj):
            return  # the echo of our own write: nothing new to reconcile
        enqueue = self.ctl.enqueue
        labels = labels_of(obj)
        if kind == "Model":
            enqueue("Model", namespace, name)
            if fresh or event_type == "DELETED":
                for dependant in ("TrainingJob", "Monitor"):
                    for other in self.cache.by_index(dependant, namespace, name):
                        enqueue(dependant, namespace, other["metadata"]["name"])
        elif kind in ("TrainingJob", "Monitor"):
            enqueue(kind, namespace, name)
            if kind == "TrainingJob":
                enqueue("Model", namespace, model_ref(obj))
        elif kind in ("Job", "Pod") and labels.get(names.LABEL_TRAINING_JOB):
            enqueue("TrainingJob", namespace, labels[names.LABEL_TRAINING_JOB])
        elif kind in ("Deployment", "Job", "Pod") and labels.get(names.LABEL_MODEL):
            # The predictor's rollout; a Model's own Job (its data check) and that Job's pod.
            enqueue("Model", namespace, labels[names.LABEL_MODEL])
        elif kind == "CronJob" and labels.get(names.LABEL_MONITOR):
            enqueue("Monitor", namespace, labels[names.LABEL_MONITOR])

    async def _gauges(self) -> None:
        """Cluster-wide gauges come from the leader only, so sums over replicas stay true."""
        while True:
            if not self.leading:
                metrics.MODELS_BY_CONDITION.clear()
                metrics.DRIFT_SHARE.clear()
                metrics.DATASET_DRIFT.clear()
                metrics.QUEUE_DEPTH.set(0)
                await asyncio.sleep(10)
                continue
            counts: dict[str, int] = {"True": 0, "False": 0, "Unknown": 0}
            for model in self.cache.all("Model"):
                ready = get_condition((model.get("status") or {}).get("conditions") or [], READY)
                counts[str((ready or {}).get("status", "Unknown"))] = (
                    counts.get(str((ready or {}).get("status", "Unknown")), 0) + 1
                )
            for status, count in counts.items():
                metrics.MODELS_BY_CONDITION.labels(condition=READY, status=status).set(count)
            self._drift_gauges()
            if self.ctl is not None and self.ctl.queue is not None:
                metrics.QUEUE_DEPTH.set(self.ctl.queue.depth)
            await asyncio.sleep(10)

    def _drift_gauges(self) -> None:
        metrics.DRIFT_SHARE.clear()
        metrics.DATASET_DRIFT.clear()
        metrics.DATA_QUALITY_VIOLATIONS.clear()
        for gauge in (metrics.LIVE_SCORE, metrics.LIVE_DEGRADED, metrics.PREDICTION_DRIFT):
            gauge.clear()
        for monitor in self.cache.all("Monitor"):
            status = monitor.get("status") or {}
            if status.get("verdict") is None:
                continue
            meta = monitor.get("metadata") or {}
            labels = (meta.get("namespace", ""), meta.get("name", ""), model_ref(monitor))
            metrics.DATASET_DRIFT.labels(*labels).set(1 if status.get("datasetDrift") else 0)
            if status.get("driftShare") is not None:
                metrics.DRIFT_SHARE.labels(*labels).set(float(status["driftShare"]))
            quality = status.get("dataQuality") or {}
            if quality.get("violations") is not None:
                metrics.DATA_QUALITY_VIOLATIONS.labels(*labels).set(int(quality["violations"]))
            live_gauges(labels, status)


def live_gauges(labels: tuple[str, str, str], status: Mapping[str, Any]) -> None:
    """The live score (overall and per slice) and the output-drift flag from status."""
    performance = status.get("performance") or {}
    version = str(status.get("checkedVersion") or "")
    for entry in performance.get("slices") or []:
        if entry.get("score") is not None:
            metrics.LIVE_SCORE.labels(*labels, version, str(entry.get("name"))).set(
                float(entry["score"])
            )
    if performance.get("verdict"):
        degraded = performance["verdict"] == PerformanceVerdict.DEGRADED
        metrics.LIVE_DEGRADED.labels(*labels).set(1 if degraded else 0)
    outputs = status.get("predictionDrift") or {}
    if outputs.get("verdict"):
        metrics.PREDICTION_DRIFT.labels(*labels).set(
            1 if outputs["verdict"] == Verdict.DRIFT else 0
        )


def build_registry(operator: Operator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Event handlers only: kopf keeps no progress, diff base or finalizer for them.
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.connect_timeout = 10
        settings.networking.request_timeout = 30
        await operator.start(settings)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> Any:
        return operator.connection

    @kopf.on.probe(id="queue", registry=registry)
    def queue_depth(**_: Any) -> int:
        queue = operator.ctl.queue if operator.ctl is not None else None
        return queue.depth if queue is not None else 0

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await operator.stop()

    for kind, group, version, plural, labels in WATCHES:

        def make(kind: str) -> Callable[..., Awaitable[None]]:
            # async, so kopf calls it on the event loop instead of a thread pool
            async def observe(event: Mapping[str, Any], **_: Any) -> None:
                operator.observe(kind, event.get("type"), event["object"])

            return observe

        kopf.on.event(
            group,
            version,
            plural,
            id=f"observe-{kind.lower()}",
            labels=labels,
            registry=registry,
        )(make(kind))
    return registry


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "operator",
        help="run the controller that reconciles Models, TrainingJobs and Monitors",
        description="Run the mlkube operator (kopf) against the cluster of KUBECONFIG or the "
        "pod's service account. Settings come from MLKUBE_* environment variables.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        metavar="NS",
        help="watch only this namespace (repeatable; glob patterns allowed)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default without --namespace)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL_OR_PORT",
        help="serve a liveness endpoint, e.g. 8080 or http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="Prometheus metrics port (default MLKUBE_METRICS_PORT or 8000; 0: off)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log kopf's own activity")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from mlkube.api.errors import CommandError

    try:
        settings = OperatorSettings.from_env()
    except SettingsError as error:
        raise CommandError(str(error)) from None
    if args.metrics_port is not None:
        settings = settings.replace(metrics_port=args.metrics_port)
    namespaces = tuple(args.namespace or ()) or settings.namespaces
    liveness = args.liveness
    if liveness and liveness.isdigit():
        liveness = f"http://0.0.0.0:{liveness}/healthz"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    operator = Operator(settings)
    loop = _new_loop()
    with contextlib.suppress(KeyboardInterrupt):
        kopf.run(
            loop=loop,
            registry=build_registry(operator),
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
            # kopf's default identity asks getpass.getuser(), which fails for a UID with no
            # passwd entry: the images' 65532, OpenShift's random UIDs.
            identity=f"mlkube@{socket.gethostname()}",  # type: ignore[arg-type]  # NewType of str
        )
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
