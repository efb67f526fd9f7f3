"""The canary leg of the loop: a good candidate is promoted, a shifted one rolled back,
and a steady stream of requests through the predictor Service never fails.

Runs after :class:`demo.loop.Loop` (v1 pinned, v2 promoted, v3 rejected), on the same
cluster, operator and node agent:

1. the Model switches to ``rollout.strategy: Canary`` (50%, a 20 s window) and drops its
   pin, so v2 serves again (a pin's removal is not a new version: no canary);
2. a steady stream starts: each request goes to one ready endpoint of the predictor
   Service's EndpointSlices, read again before every request, as kube-proxy would pick;
3. a retrain with the same estimator (v4) runs as a canary beside v2; the operator
   scrapes both versions' pods and promotes it after the window; the stable Deployment
   rolls to v4 and the canary's is deleted;
4. a deliberately weak estimator (v5; the gate loosened so it passes) runs as a canary,
   predicts one class where stable predicts three, and is rolled back at once; v4
   serves on.

The stream counts a request as failed when it gets no answer or a non-200. A connection
refused before any byte was sent (a pod that got SIGTERM before the EndpointSlice
controller dropped it: no preStop hooks on the node agent) goes to another ready
endpoint, as a proxy retrying connect failures does; those are counted separately.
Traffic goes only to pod IPs inside the node agent's network namespaces.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

from demo.loop import FEATURES, GROUP, MODEL, NORMAL_ROWS, Loop, LoopError
from nodeagent.kube import Kube, Obj

ROLLOUT = {
    "strategy": "Canary",
    "canaryPercent": 50,
    "analysisSeconds": 20,
    "minRequests": 30,
    # The machine is shared: the latency limit is loose, the prediction limit is not.
    "limits": {"maxErrorRateIncrease": 0.01, "maxP99Ratio": 20, "maxPredictionShift": 0.2},
}
BODY = json.dumps(
    {
        "inputs": [
            {"name": name, "shape": [len(NORMAL_ROWS)], "datatype": "FP64",
             "data": [row[i] for row in NORMAL_ROWS]}
            for i, name in enumerate(FEATURES)
        ]
    }
).encode()  # fmt: skip


@dataclass
class StreamCounts:
    """What the steady stream saw: answers by version, failures, connect retries."""

    answers: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    connect_retries: int = 0

    @property
    def total(self) -> int:
        return sum(self.answers.values())


@dataclass
class CanarySummary:
    good: Obj = field(default_factory=dict)
    bad: Obj = field(default_factory=dict)
    rollouts: list[Obj] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    stream: StreamCounts = field(default_factory=StreamCounts)
    timings: list[tuple[str, float]] = field(default_factory=list)


class Stream(threading.Thread):
    """Requests one after another to the Service's ready endpoints until stopped."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(daemon=True)
        self.kube = kube
        self.path = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        self.counts = StreamCounts()
        self.done = threading.Event()
        self.turn = itertools.count()

    def endpoints(self) -> list[str]:
        service = f"kubernetes.io/service-name={MODEL}-predictor"
        slices = self.kube.get(self.path, labelSelector=service)
        return [
            address
            for piece in slices["items"]
            for endpoint in piece.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
            and not (endpoint.get("conditions") or {}).get("terminating")
            for address in endpoint.get("addresses") or []
        ]

    def run(self) -> None:
        while not self.done.is_set():
            self.once()
            time.sleep(0.05)

    def once(self) -> None:
        addresses = self.endpoints()
        if not addresses:
            self.counts.failures.append("no ready endpoint")
            return
        start = next(self.turn)
        for attempt in range(len(addresses)):
            address = addresses[(start + attempt) % len(addresses)]
            connection = http.client.HTTPConnection(address, 8080, timeout=10)
            try:
                connection.connect()
            except ConnectionRefusedError:
                self.counts.connect_retries += 1
                connection.close()
                continue
            try:
                connection.request("POST", f"/v2/models/{MODEL}/infer", BODY,
                                   {"Content-Type": "application/json"})  # fmt: skip
                response = connection.getresponse()
                payload = response.read()
                if response.status != 200:
                    failure = f"{address}: HTTP {response.status} {payload[:200]!r}"
                    self.counts.failures.append(failure)
                    return
                version = str(json.loads(payload).get("model_version"))
                self.counts.answers[version] = self.counts.answers.get(version, 0) + 1
            except (OSError, http.client.HTTPException, ValueError) as error:
                self.counts.failures.append(f"{address}: {type(error).__name__}: {error}")
            finally:
                connection.close()
            return
        self.counts.failures.append(f"every endpoint refused: {addresses}")


class CanaryLeg:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.summary = CanarySummary()

    def run(self) -> CanarySummary:
        loop = self.loop
        model_path = f"{GROUP}/namespaces/{loop.ns}/models/{MODEL}"
        canary_path = f"/apis/apps/v1/namespaces/{loop.ns}/deployments/{MODEL}-predictor-canary"
        with loop.step("rollout Canary (50%, 20s window); the pin goes, v2 serves again"):
            serving = {"version": None, "rollout": ROLLOUT}
            loop.kube.merge_patch(model_path, {"spec": {"serving": serving}})
            loop.wait("v2 serving", lambda: loop.model()["status"].get("servingVersion") == 2)
            loop.serving(2)
        stream = Stream(Kube(loop.kubeconfig), loop.ns)
        stream.start()
        try:
            with loop.step("a retrained v4 runs as a canary beside v2, passes, is promoted"):
                self.summary.good = self._candidate(f"{MODEL}-good", 4, {})
                if self.summary.good["decision"] != "Promoted":
                    raise LoopError(f"v4 was not promoted: {json.dumps(self.summary.good)}")
                loop.serving(4)
                loop.wait("the canary deleted", lambda: loop.kube.find(canary_path) is None)
            with loop.step("a weak v5 (gate loosened) is a canary, shifts predictions, rolls back"):
                loose = {"minScore": 0.0, "maxRegression": 1.0}
                loop.kube.merge_patch(model_path, {"spec": {"promotion": loose}})
                weak = {
                    "estimator": {"params": {"C": 0.0001, "max_iter": 5}},
                    "validation": {"slices": []},
                }
                self.summary.bad = self._candidate(f"{MODEL}-shifted", 5, weak)
                if self.summary.bad["decision"] != "Rejected":
                    raise LoopError(f"v5 was not rolled back: {json.dumps(self.summary.bad)}")
                loop.wait("the canary deleted", lambda: loop.kube.find(canary_path) is None)
                time.sleep(2)  # the stream keeps going on v4 alone for a moment
        finally:
            stream.done.set()
            stream.join(timeout=30)
            stream.kube.close()
        self.summary.stream = stream.counts
        status = loop.model()["status"]
        if status.get("servingVersion") != 4:
            raise LoopError(f"v4 does not serve after the rollback: {status.get('servingVersion')}")
        self.summary.rollouts = [p for p in status.get("promotions") or [] if p.get("canary")]
        events = loop.kube.get(f"/api/v1/namespaces/{loop.ns}/events")["items"]
        self.summary.events = [
            f"{e['reason']}: {e['message']}" for e in events
            if e["reason"].startswith("Canary") and e["involvedObject"]["name"] == MODEL
        ]  # fmt: skip
        counts = stream.counts
        loop.say(
            f"  stream: {counts.total} answers {counts.answers}, {len(counts.failures)} "
            f"failed, {counts.connect_retries} connect retries"
        )
        return self.summary

    def _candidate(self, name: str, version: int, overrides: Obj) -> Obj:
        loop = self.loop
        spec: Obj = {"modelRef": {"name": MODEL}, "trigger": "manual", "reason": "canary leg"}
        if overrides:
            spec["overrides"] = overrides
        loop.kube.create(f"{GROUP}/namespaces/{loop.ns}/trainingjobs", {
            "apiVersion": "mlkube.io/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name}, "spec": spec,
        })  # fmt: skip
        loop.finished(name)

        def canary_seen() -> Obj | None:
            rollout = loop.model()["status"].get("rollout") or {}
            return rollout if rollout.get("candidate") == version else None

        loop.wait(f"v{version} as the canary", canary_seen)

        def decided() -> Obj | None:
            entry = loop.version(version)
            return entry if entry and entry.get("decision") in ("Promoted", "Rejected") else None

        entry = loop.wait(f"the canary of v{version} decided", decided, timeout=240)
        rollout = loop.model()["status"].get("rollout") or {}
        loop.say(f"  v{version} {rollout.get('phase')}: {rollout.get('message')}")
        return {**entry, "rollout": rollout}
