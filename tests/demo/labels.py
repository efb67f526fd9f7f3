"""The ground-truth leg of the loop (issue 17), apart from the iris loop it follows.

Its own Model and Monitor (``manifests/examples/iris-live.yaml``): v1 trains and serves;
traffic shifts (two sensors recalibrated, +2 cm on sepal width and petal length); the
true species come back through the predictor's feedback route; the Monitor's check
finds v1's live accuracy below ``minScore`` and opens a TrainingJob with trigger
``performance`` that names the labelled live rows; v2 trains on the reference data plus
those rows, passes the gate and is promoted; the same shifted traffic and labels go to
v2 and a second check measures its live accuracy. Both figures are in the summary.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from demo.loop import GROUP, REPO, Loop, LoopError
from nodeagent.kube import Kube, Obj

EXAMPLE = REPO / "manifests" / "examples" / "iris-live.yaml"
MODEL = "iris-live"
SHIFT = (0.0, 2.0, 2.0, 0.0)  # sepal width and petal length read 2 cm high
STORE_CLAIM = "mlkube-models"
ROWS = 300
SELECTOR = f"mlkube.io/component=predictor,mlkube.io/model={MODEL}"


@dataclass
class LabelsSummary:
    scores: dict[int, float] = field(default_factory=dict)  # live accuracy per version
    labels: dict[int, int] = field(default_factory=dict)
    live_rows: int = 0
    versions: list[Obj] = field(default_factory=list)
    timings: list[tuple[str, float]] = field(default_factory=list)


def shifted_traffic(seed: int, rows: int = ROWS) -> list[tuple[tuple[float, ...], int]]:
    """Iris rows with the sensor shift and a little noise, each with its true species."""
    from sklearn.datasets import load_iris

    data = load_iris()
    rng = random.Random(seed)
    picked = []
    for _ in range(rows):
        i = rng.randrange(len(data.target))
        row = tuple(
            round(float(v) + s + rng.gauss(0, 0.05), 3)
            for v, s in zip(data.data[i], SHIFT, strict=True)
        )
        picked.append((row, int(data.target[i])))
    return picked


class LabelsLeg:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.kube: Kube = loop.kube
        self.ns = loop.ns
        self.summary = LabelsSummary()

    def _model(self) -> Obj:
        return self.kube.get(f"{GROUP}/namespaces/{self.ns}/models/{MODEL}")

    def _address(self, version: int) -> str:
        def ready() -> str | None:
            pods = [
                p for p in self.loop.ready_predictors(SELECTOR)
                if p["metadata"].get("labels", {}).get("mlkube.io/version") == str(version)
            ]  # fmt: skip
            return str(pods[0]["status"]["podIP"]) if len(pods) == 1 else None

        return self.loop.wait(f"one {MODEL} predictor pod of v{version}", ready)

    def _traffic_and_labels(self, version: int, seed: int) -> None:
        """Shifted rows in batches of 10; the answers' ids and rows carry the labels back."""
        address = self._address(version)
        traffic = shifted_traffic(seed)
        labels = []
        for start in range(0, len(traffic), 10):
            batch = traffic[start : start + 10]
            answer = self.loop.infer(address, [row for row, _ in batch], model=MODEL)
            if answer.get("model_version") != str(version):
                raise LoopError(f"expected v{version} to answer, got {answer}")
            labels += [
                {"id": answer["id"], "row": i, "label": label} for i, (_, label) in enumerate(batch)
            ]
        accepted = self.loop.post(address, MODEL, "feedback", {"labels": labels})
        if accepted.get("accepted") != len(labels):
            raise LoopError(f"feedback not accepted: {accepted}")
        self.loop.say(f"  sent {len(traffic)} shifted rows to v{version} and their labels")

    def _check(self, version: int, job: str) -> Obj:
        """Runs the Monitor's CronJob once; returns its performance status for ``version``."""
        self.loop.kubectl("create", "job", f"--from=cronjob/{MODEL}-drift", job)

        def checked() -> Obj | None:
            status = self.kube.get(f"{GROUP}/namespaces/{self.ns}/monitors/{MODEL}").get(
                "status", {}
            )
            performance = status.get("performance") or {}
            # the CronJob's own schedule may also run a check: wait for one that saw our
            # labels (a check before they arrived says insufficient-labels, with no score)
            if status.get("checkedVersion") == version and performance.get("labels", 0) >= ROWS:
                return dict(performance)
            return None

        performance = self.loop.wait(f"a live score for v{version}", checked)
        self.summary.scores[version] = float(performance["score"])
        self.summary.labels[version] = int(performance["labels"])
        self.loop.say(
            f"  v{version} live {performance['metric']} {performance['score']:.4f} on "
            f"{performance['labels']} labels: {performance['verdict']} ({performance['message']})"
        )
        return performance

    def run(self) -> LabelsSummary:
        loop = self.loop
        with loop.step("apply iris-live (Model that learns from labels + Monitor)"):
            claims = f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims"
            if self.kube.find(f"{claims}/{STORE_CLAIM}") is None:  # run on its own
                self.kube.create(claims, {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": STORE_CLAIM},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}},
                })  # fmt: skip
            loop.kubectl("apply", "-f", str(EXAMPLE))
            job = loop.finished(f"{MODEL}-v1")
            if job["status"]["phase"] != "Succeeded":
                raise LoopError(f"{MODEL} v1 did not succeed: {json.dumps(job['status'])[:2000]}")
            loop.wait("v1 serving", lambda: self._model()["status"].get("servingVersion") == 1)
        with loop.step("shifted traffic reaches v1 and labels come back (feedback route)"):
            self._traffic_and_labels(1, seed=11)
        with loop.step("the check finds v1's live accuracy below minScore and retrains"):
            performance = self._check(1, "live-check-1")
            if performance["verdict"] != "degraded":
                raise LoopError(f"v1's live score was not degraded: {performance}")
            name = loop.wait("a TrainingJob with trigger performance", self._performance_job)
        with loop.step("v2 trains on reference + labelled live rows and is promoted"):
            job = loop.finished(name)
            if job["status"]["phase"] != "Succeeded":
                raise LoopError(f"{name} did not succeed: {json.dumps(job['status'])[:2000]}")
            loop.wait("v2 serving", lambda: self._model()["status"].get("servingVersion") == 2)
            live = (job["status"].get("lineage") or {}).get("liveRows") or {}
            self.summary.live_rows = int(live.get("rows") or 0)
            loop.say(f"  v2 trained with {self.summary.live_rows} labelled live rows")
        with loop.step("the same shifted traffic and labels reach v2; the check scores it"):
            self._traffic_and_labels(2, seed=11)
            self._check(2, "live-check-2")
        self.summary.versions = list(self._model()["status"].get("versions", []))
        return self.summary

    def _performance_job(self) -> str | None:
        for tj in self.kube.get(f"{GROUP}/namespaces/{self.ns}/trainingjobs")["items"]:
            spec = tj["spec"]
            if spec.get("trigger") == "performance" and spec["modelRef"]["name"] == MODEL:
                return str(tj["metadata"]["name"])
        return None
