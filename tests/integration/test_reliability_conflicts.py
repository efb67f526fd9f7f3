"""409 Conflicts on the Model's status: the operator retries and loses nothing.

Another controller writes its own condition (``ExternalAudit``) into a Model's status
through the ``status`` subresource (server-side apply, its own field manager) in a tight
loop, bumping the resourceVersion under the operator while it allocates versions for an
initial run and three concurrent manual runs, records their results and promotes. The
operator writes Model status with a resourceVersion precondition, so its stale writes
fail with 409; the apiserver's audit log counts them (by the operator's User-Agent). At
the end: every version recorded exactly once and numbered 1..4, each run with its own
number, one Job per run, the best version serving, and the other writer's condition
still there (the operator never wrote over a status it had not read).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from conftest import OperatorKit, OperatorProcess, trainer_summary
from harness.controlplane import ControlPlane
from reliability.figures import record
from reliability.workspace import bundled_model

RUNS = {"m-v1": 0.40, "r2": 0.55, "r3": 0.70, "r4": 0.60}  # TrainingJob -> score
WRITE_INTERVAL = 0.02


class StatusWriter(threading.Thread):
    """Another controller: applies its own condition to the Model's status, over and over."""

    def __init__(self, plane: ControlPlane, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.plane, self.namespace, self.name = plane, namespace, name
        self.done = threading.Event()
        self.writes = 0
        self.errors: list[str] = []

    def run(self) -> None:
        server = urlparse(self.plane.server)
        connection = http.client.HTTPSConnection(
            server.hostname or "127.0.0.1", server.port, context=self.plane.ssl_context()
        )
        path = (
            f"/apis/mlkube.io/v1alpha1/namespaces/{self.namespace}/models/{self.name}/status"
            "?fieldManager=external-auditor&force=true"
        )
        while not self.done.is_set():
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            condition = {
                "type": "ExternalAudit",
                "status": "True",
                "reason": "Audited",
                "message": f"audit pass {self.writes}",
                "lastTransitionTime": now,
            }
            body = {
                "apiVersion": "mlkube.io/v1alpha1",
                "kind": "Model",
                "metadata": {"name": self.name},
                "status": {"conditions": [condition]},
            }
            connection.request(
                "PATCH",
                path,
                json.dumps(body),
                {"Content-Type": "application/apply-patch+yaml"},
            )
            response = connection.getresponse()
            text = response.read().decode()
            if response.status == 200:
                self.writes += 1
            else:
                self.errors.append(f"{response.status} {text[:200]}")
            time.sleep(WRITE_INTERVAL)
        connection.close()


def _model() -> dict[str, Any]:
    promotion = {"policy": "auto", "minScore": 0.1, "maxRegression": 0.01}
    return bundled_model("m", training={"backoffLimit": 0}, promotion=promotion)


def _manual(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"modelRef": {"name": "m"}, "trigger": "manual", "reason": "conflict test"},
    }


def _operator_status_writes(plane: ControlPlane, namespace: str) -> dict[int, int]:
    """HTTP codes of the operator's writes to Model status in ``namespace``, counted."""
    codes: dict[int, int] = {}
    for line in plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            not str(event.get("userAgent", "")).startswith("mlkube-operator/")
            or ref.get("namespace") != namespace
            or (ref.get("resource"), ref.get("subresource")) != ("models", "status")
            or event["verb"] != "patch"
            or event.get("stage") != "ResponseComplete"
        ):
            continue
        code = int((event.get("responseStatus") or {}).get("code") or 0)
        codes[code] = codes.get(code, 0) + 1
    return codes


def test_status_conflicts_are_retried_and_nothing_is_lost(
    control_plane: ControlPlane, crds: list[str], kit: OperatorKit, tmp_path: Path
) -> None:
    operator = OperatorProcess.start(control_plane, tmp_path / "operator.log", "-n", kit.ns)
    writer = StatusWriter(control_plane, kit.ns, "m")
    try:
        kit.apply(_model())
        kit.wait_get("model", "m")
        writer.start()
        kit.wait("m-v1 v1", lambda: kit.status("trainingjob", "m-v1").get("version") == 1)
        for name in list(RUNS)[1:]:
            kit.apply(_manual(name))
        for name in RUNS:
            kit.wait(
                f"{name} numbered", lambda name=name: kit.status("trainingjob", name).get("version")
            )
        numbers = {name: int(kit.status("trainingjob", name)["version"]) for name in RUNS}
        for name, score in RUNS.items():
            pod = kit.job_pod(f"{name}-train")
            summary = trainer_summary(
                numbers[name], score, metric="r2", namespace=kit.ns, model="m"
            )
            kit.finish_pod(pod["metadata"]["name"], 0, summary)
        status = kit.wait(
            "every version recorded",
            lambda: (s := kit.status("model", "m")) and len(s.get("versions") or []) == 4 and s,
            timeout=60,
        )
        time.sleep(1)  # more conflicts while the operator settles
    finally:
        writer.done.set()
        writer.join(timeout=10)
        operator.stop()
    final = kit.status("model", "m")
    codes = _operator_status_writes(control_plane, kit.ns)

    assert writer.errors == []
    assert sorted(numbers.values()) == [1, 2, 3, 4], numbers
    assert [v["version"] for v in final["versions"]] == [1, 2, 3, 4]
    recorded = {v["trainingJob"]: v["version"] for v in final["versions"]}
    assert recorded == numbers
    assert final["allocatedVersion"] == 4
    assert final["latestVersion"] == 4
    serving, serving_score = None, 0.0
    for name in sorted(RUNS, key=lambda name: numbers[name]):  # decided in version order
        if serving is None or RUNS[name] >= serving_score - 0.01:
            serving, serving_score = numbers[name], RUNS[name]
    assert final["servingVersion"] == serving
    assert all(p["version"] in numbers.values() for p in final["promotions"])
    jobs = sorted(j["metadata"]["name"] for j in kit.list("jobs"))
    assert jobs == sorted(f"{name}-train" for name in RUNS)
    conditions = {c["type"]: c for c in final["conditions"]}
    assert conditions["ExternalAudit"]["reason"] == "Audited", "the other writer's condition"
    assert {"Ready", "Trained", "Serving"} <= set(conditions)
    assert "Stalled" not in conditions
    assert status["versions"] == final["versions"]
    assert codes.get(409, 0) > 0, f"no conflict was provoked: {codes}"
    assert "Traceback" not in operator.tail(400)
    record(
        "statusConflicts",
        {
            "otherWriterWrites": writer.writes,
            "operatorStatusWrites": sum(codes.values()),
            "operatorConflicts409": codes.get(409, 0),
            "versionsRecorded": len(final["versions"]),
            "lostOrDuplicateVersions": 0,
        },
    )
