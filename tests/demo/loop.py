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
    ) -> None:
        self.kube = kube
        self.kubectl_bin = kubectl
        self.kubeconfig = kubeconfig
        self.ns = namespace
        self.say = say
        self.timeout = step_timeout
        self.summary = Summary()

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

    def infer(self, address: str, rows: list[tuple[float, ...]], model: str = MODEL) -> Obj:
        body = {
            "inputs": [
                {"name": name, "shape": [len(rows)], "datatype": "FP64",
                 "data": [row[i] for row in rows]}
                for i, name in enumerate(FEATURES)
            ]
        }  # fmt: skip
        return self.post(address, model, "infer", body)

    def post(self, address: str, model: str, route: str, body: Obj) -> Obj:
        """POSTs JSON to ``/v2/models/<model>/<route>`` of a predictor pod; the answer."""
        request = urllib.request.Request(
            f"http://{address}:8080/v2/models/{model}/{route}",
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
            if all(r.get("model_version") == str(version) for r in replies):
                return replies[0]
            return None

        answer = self.wait(f"the predictor to answer as v{version}", answers)
        predictions = answer["outputs"][0]["data"]
        self.summary.answers[f"v{version}"] = f"{predictions}"
        return answer

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
        with self.step("apply the iris example (Model + Monitor) and its store claim"):
            self.kube.create(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims", {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "mlkube-models"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}},
            })  # fmt: skip
            self.kubectl("apply", "-f", str(EXAMPLE))
        with self.step("v1 trains in a real Job and is promoted"):
            job = self.finished(f"{MODEL}-v1")
            if job["status"]["phase"] != "Succeeded":
                raise LoopError(f"v1 did not succeed: {json.dumps(job['status'])[:2000]}")
            self.wait("v1 serving", lambda: self.model()["status"].get("servingVersion") == 1)
        with self.step("the predictor is Ready and answers at its pod IP as v1"):
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

    def _send_drifted_traffic(self) -> None:
        address = self.ready_predictors()[0]["status"]["podIP"]
        rng = random.Random(7)
        sent = 0
        for _ in range(20):
            rows = [
                tuple(round(v * 1.8 + rng.uniform(1.0, 2.0), 2) for v in rng.choice(NORMAL_ROWS))
                for _ in range(10)
            ]
            self.infer(address, rows)
            sent += len(rows)
        self.say(f"  sent {sent} drifted rows to {address}")
        time.sleep(1.0)

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
