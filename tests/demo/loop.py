"""The whole mlkube loop, step by step, against a cluster whose pods really run.

Shared by the end-to-end test and ``make demo``: apply the iris example → v1 trains in a
Job → the predictor answers at its pod IP → drifted traffic → the drift CronJob runs (as
a Job created from it) → a drift TrainingJob → v2 promoted, served → a weak v3 rejected
while v2 keeps serving → a pin rolls back to v1. Every step is checked through the API
and the server's own answers; a step that does not get there raises :class:`LoopError`
with what it saw last.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml

from mlkube.api.names import predictor_name
from nodeagent.kube import Kube, Obj

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "examples" / "iris.yaml"
MODEL = "iris"
GROUP = "/apis/mlkube.io/v1alpha1"
FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
# Typical iris rows (one per class) and the same rows moved far from the training data.
NORMAL_ROWS = ((5.1, 3.5, 1.4, 0.2), (5.9, 2.8, 4.3, 1.3), (6.5, 3.0, 5.8, 2.2))
PREDICTOR_SELECTOR = f"mlkube.io/component=predictor,mlkube.io/model={MODEL}"
T = TypeVar("T")


@dataclass(frozen=True)
class S3Store:
    """An S3 bucket for the loop: the Model names it, pods reach the server at
    ``endpoint`` (a node-agent relay), credentials go into a Secret, and ``objects`` lists
    a prefix from the host (the test's view of the bucket)."""

    bucket: str
    access_key: str
    secret_key: str
    objects: Callable[[str], list[str]]
    secret: str = "mlkube-store"


class LoopError(AssertionError):
    """A step did not reach its expected state in time."""


@dataclass
class Summary:
    """What the loop did, for the demo's table and the test's assertions."""

    versions: list[Obj] = field(default_factory=list)
    monitor: Obj = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    timings: list[tuple[str, float]] = field(default_factory=list)
    total_seconds: float = 0.0


class Loop:
    def __init__(
        self,
        kube: Kube,
        kubectl: Path,
        kubeconfig: Path,
        namespace: str,
        *,
        say: Callable[[str], None] = lambda _: None,
        step_timeout: float = 150,
        s3: S3Store | None = None,
        via_service: bool = False,
    ) -> None:
        self.kube = kube
        self.kubectl_bin = kubectl
        self.kubeconfig = kubeconfig
        self.ns = namespace
        self.say = say
        self.timeout = step_timeout
        # On a real node, clients reach the predictor through its Service's ClusterIP
        # (kube-proxy); the node agent has no Services, so its pods are called directly.
        self.via_service = via_service
        self.summary = Summary()
        self.s3 = s3

    # -- plumbing ------------------------------------------------------------------------
    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", "-n", self.ns, *args],
            input=input_text, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise LoopError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float | None = None) -> T:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            time.sleep(0.5)
        raise LoopError(f"timed out waiting for {what}; model status: {self._model_status()}")

    def _model_status(self) -> str:
        model = self.kube.find(f"{GROUP}/namespaces/{self.ns}/models/{MODEL}") or {}
        return json.dumps(model.get("status", {}))[:3000]

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.say(f"▶ {title}")
        started = time.monotonic()
        yield
        took = time.monotonic() - started
        self.summary.timings.append((title, took))
        self.say(f"  ✓ {took:.1f}s")

    def model(self) -> Obj:
        return self.kube.get(f"{GROUP}/namespaces/{self.ns}/models/{MODEL}")

    def version(self, number: int) -> Obj | None:
        for entry in self.model().get("status", {}).get("versions", []):
            if entry.get("version") == number:
                return dict(entry)
        return None

    def ready_predictors(self, selector: str = PREDICTOR_SELECTOR) -> list[Obj]:
        path = f"/api/v1/namespaces/{self.ns}/pods"
        pods = self.kube.get(path, labelSelector=selector)["items"]
        return [
            p for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", []))
        ]  # fmt: skip

    def cluster_address(self) -> tuple[str, int] | None:
        """The predictor Service's ClusterIP and port, once it has them."""
        path = f"/api/v1/namespaces/{self.ns}/services/{predictor_name(MODEL)}"
        spec = (self.kube.find(path) or {}).get("spec") or {}
        if not spec.get("clusterIP") or not spec.get("ports"):
            return None
        return str(spec["clusterIP"]), int(spec["ports"][0]["port"])

    def infer(
        self, address: str, rows: list[tuple[float, ...]], port: int = 8080, model: str = MODEL
    ) -> Obj:
        body = {
            "inputs": [
                {"name": name, "shape": [len(rows)], "datatype": "FP64",
                 "data": [row[i] for row in rows]}
                for i, name in enumerate(FEATURES)
            ]
        }  # fmt: skip
        return self.post(address, model, "infer", body, port=port)

    def post(self, address: str, model: str, route: str, body: Obj, port: int = 8080) -> Obj:
        """POSTs JSON to ``/v2/models/<model>/<route>`` of a predictor pod; the answer."""
        request = urllib.request.Request(
            f"http://{address}:{port}/v2/models/{model}/{route}",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: Obj = json.loads(response.read())
        return answer

    def serving(self, version: int) -> Obj:
        """Waits until every Ready predictor pod answers as ``version``; returns an answer."""

        def answers() -> Obj | None:
            pods = self.ready_predictors()
            if not pods:
                return None
            replies = []
            for pod in pods:
                try:
                    replies.append(self.infer(pod["status"]["podIP"], list(NORMAL_ROWS)))
                except (urllib.error.URLError, OSError):
                    return None
            if not all(r.get("model_version") == str(version) for r in replies):
                return None
            return self._through_service(version) if self.via_service else replies[0]

        answer = self.wait(f"the predictor to answer as v{version}", answers)
        predictions = answer["outputs"][0]["data"]
        self.summary.answers[f"v{version}"] = f"{predictions}"
        return answer

    def _through_service(self, version: int) -> Obj | None:
        """Three answers in a row through the ClusterIP, all from ``version``."""
        service = self.cluster_address()
        if service is None:
            return None
        replies = []
        for _ in range(3):
            try:
                replies.append(self.infer(service[0], list(NORMAL_ROWS), port=service[1]))
            except (urllib.error.URLError, OSError):
                return None
        if all(r.get("model_version") == str(version) for r in replies):
            return replies[0]
        return None

    def training_job(self, name: str) -> Obj | None:
        return self.kube.find(f"{GROUP}/namespaces/{self.ns}/trainingjobs/{name}")

    def finished(self, name: str) -> Obj:
        def done() -> Obj | None:
            job = self.training_job(name)
            phase = (job or {}).get("status", {}).get("phase")
            return job if phase in ("Succeeded", "Failed", "Rejected") else None

        return self.wait(f"TrainingJob {name} to finish", done)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> Summary:
        started = time.monotonic()
        if self.s3 is None:
            with self.step("apply the iris example (Model + Monitor) and its store claim"):
                self._apply_on_a_claim()
        else:
            with self.step(f"apply the iris example on s3://{self.s3.bucket} and its Secret"):
                self._apply_on_s3(self.s3)
        with self.step("v1 trains in a real Job and is promoted"):
            job = self.finished(f"{MODEL}-v1")
            if job["status"]["phase"] != "Succeeded":
                raise LoopError(f"v1 did not succeed: {json.dumps(job['status'])[:2000]}")
            self.wait("v1 serving", lambda: self.model()["status"].get("servingVersion") == 1)
        where = "its pod IP and ClusterIP" if self.via_service else "its pod IP"
        with self.step(f"the predictor is Ready and answers at {where} as v1"):
            self.serving(1)
        with self.step("drifted traffic reaches the predictor (inference log)"):
            self._send_drifted_traffic()
        with self.step("the drift CronJob runs (a Job from it) and asks for a retrain"):
            drift_job = self._run_drift_check()
        with self.step("v2 trains on trigger drift, passes the gate and is promoted"):
            job = self.finished(drift_job)
            if job["status"]["phase"] != "Succeeded":
                raise LoopError(f"v2 did not succeed: {json.dumps(job['status'])[:2000]}")
            self.wait("v2 serving", lambda: self.model()["status"].get("servingVersion") == 2)
        with self.step("the Deployment rolls to v2 and answers"):
            self.serving(2)
        with self.step("a weak v3 (C=1e-4, max_iter=5) is rejected; v2 keeps serving"):
            self._weak_version()
            self.serving(2)
        with self.step("a pin (spec.serving.version: 1) rolls back to v1"):
            self.kube.merge_patch(
                f"{GROUP}/namespaces/{self.ns}/models/{MODEL}",
                {"spec": {"serving": {"version": 1}}},
            )
            self.wait("v1 serving again", lambda: self.model()["status"].get("servingVersion") == 1)
            self.serving(1)
        self.summary.total_seconds = time.monotonic() - started
        self.summary.versions = list(self.model()["status"].get("versions", []))
        return self.summary

    def _apply_on_a_claim(self) -> None:
        self.kube.create(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "mlkube-models"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
        })  # fmt: skip
        self.kubectl("apply", "-f", str(EXAMPLE))

    def _apply_on_s3(self, s3: S3Store) -> None:
        """The same example, its Model on the bucket with two replicas (spread over nodes)."""
        self.kubectl(
            "create", "secret", "generic", s3.secret,
            f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_key}",
        )  # fmt: skip
        docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
        for doc in docs:
            if doc["kind"] == "Model":
                doc["spec"]["storage"] = {
                    "uri": f"s3://{s3.bucket}/{self.ns}",
                    "secretRef": {"name": s3.secret},
                }
                doc["spec"]["serving"]["autoscaling"]["minReplicas"] = 2
        self.kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(docs))

    def _send_drifted_traffic(self) -> None:
        address, port = self.ready_predictors()[0]["status"]["podIP"], 8080
        if self.via_service:
            address, port = self.wait("the predictor's ClusterIP", self.cluster_address)
        rng = random.Random(7)
        sent = 0
        for _ in range(20):
            rows = [
                tuple(round(v * 1.8 + rng.uniform(1.0, 2.0), 2) for v in rng.choice(NORMAL_ROWS))
                for _ in range(10)
            ]
            self.infer(address, rows, port=port)
            sent += len(rows)
        self.say(f"  sent {sent} drifted rows to {address}:{port}")
        time.sleep(1.0)
        if self.s3 is not None:
            prefix = f"{self.ns}/{self.ns}/{MODEL}/inference/"
            objects = self.wait("inference logs in the bucket", lambda: self.s3.objects(prefix))  # type: ignore[union-attr]
            self.say(f"  {len(objects)} inference-log objects under s3://{self.s3.bucket}/{prefix}")

    def _run_drift_check(self) -> str:
        cronjob = self.wait(
            "the drift CronJob",
            lambda: self.kube.find(f"/apis/batch/v1/namespaces/{self.ns}/cronjobs/{MODEL}-drift"),
        )
        self.kubectl("create", "job", f"--from=cronjob/{cronjob['metadata']['name']}", "drift-now")

        def drift_job() -> str | None:
            for tj in self.kube.get(f"{GROUP}/namespaces/{self.ns}/trainingjobs")["items"]:
                if tj["spec"].get("trigger") == "drift":
                    return str(tj["metadata"]["name"])
            return None

        name = self.wait("a TrainingJob with trigger drift", drift_job)

        def checked() -> Obj | None:
            found = self.kube.get(f"{GROUP}/namespaces/{self.ns}/monitors/{MODEL}")
            return found if found.get("status", {}).get("verdict") else None

        monitor = self.wait("the drift verdict in Monitor.status", checked)
        self.summary.monitor = dict(monitor.get("status", {}))
        self.say(
            f"  drift: verdict {monitor['status'].get('verdict')}, share "
            f"{monitor['status'].get('driftShare')}, TrainingJob {name}"
        )
        return name

    def _weak_version(self) -> None:
        self.kube.create(f"{GROUP}/namespaces/{self.ns}/trainingjobs", {
            "apiVersion": "mlkube.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": f"{MODEL}-weak"},
            "spec": {"modelRef": {"name": MODEL}, "trigger": "manual",
                     "reason": "a deliberately weak estimator",
                     "overrides": {"estimator": {"params": {"C": 0.0001, "max_iter": 5}}}},
        })  # fmt: skip
        job = self.finished(f"{MODEL}-weak")
        if job["status"]["phase"] not in ("Succeeded", "Rejected"):
            raise LoopError(f"the weak version did not train: {json.dumps(job['status'])}")

        def decided() -> Obj | None:
            entry = self.version(3)
            return entry if entry and entry.get("decision") else None

        entry = self.wait("a promotion decision on v3", decided)
        if entry["promoted"]:
            raise LoopError(f"the weak version was promoted: {json.dumps(entry)}")
        self.say(f"  v3 {entry['decision']}: {entry.get('reason')}")
        if self.model()["status"].get("servingVersion") != 2:
            raise LoopError("serving moved off v2 after a rejected version")
