"""Fixtures for integration tests of the operator: a running ``mlkube operator`` and a kit.

The operator runs as a subprocess (``mlkube operator``) against the session's control
plane, exactly as a user starts it; tests that kill it start their own. There is no
kubelet, so ``OperatorKit`` plays its part by patching pod status through the
``pods/status`` subresource, and reads objects and kstatus through kubectl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.controlplane import ControlPlane
from harness.ports import free_ports

MLKUBE = Path(sys.executable).with_name("mlkube")
T = TypeVar("T")


@dataclass
class OperatorProcess:
    """One ``mlkube operator`` subprocess; ``kill()`` is SIGKILL, ``stop()`` is graceful."""

    proc: subprocess.Popen[bytes]
    log: Path
    liveness: str
    metrics: str

    @classmethod
    def start(
        cls, plane: ControlPlane, log: Path, *args: str, env: dict[str, str] | None = None
    ) -> OperatorProcess:
        port, metrics_port = free_ports(2)
        env = {
            **os.environ,
            "KUBECONFIG": str(plane.kubeconfig),
            "MLKUBE_METRICS_PORT": str(metrics_port),
            "MLKUBE_RUNTIME_IMAGE": "mlkube/runtime:test",
            **(env or {}),
        }
        handle = log.open("ab")
        proc = subprocess.Popen(
            [str(MLKUBE), "operator", "--liveness", f"http://127.0.0.1:{port}/healthz", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        handle.close()
        operator = cls(
            proc, log, f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{metrics_port}/"
        )
        deadline = time.monotonic() + 60
        while not operator.alive():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start:\n{operator.tail()}")
            time.sleep(0.2)
        return operator

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def metric(self, name: str) -> float | None:
        """One series, named with its labels as exported (None: not exported)."""
        with urllib.request.urlopen(self.metrics, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class OperatorKit:
    """kubectl-level helpers: get/apply/wait, and the kubelet's part for pods."""

    def __init__(self, plane: ControlPlane, namespace: str) -> None:
        self.plane = plane
        self.ns = namespace

    def kubectl(
        self, *args: str, input_text: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.plane.kubectl("-n", self.ns, *args, input_text=input_text, check=check)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input_text=json.dumps(manifest))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise RuntimeError(result.stderr)
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def list(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def wait(self, what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.25)

    def wait_get(self, kind: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait(f"{kind}/{name}", lambda: self.get(kind, name), timeout)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return (self.get(kind, name) or {}).get("status") or {}

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self.list("pods", selector)

    def job_pod(self, job: str) -> dict[str, Any]:
        return self.wait(
            f"a pod of Job {job}",
            lambda: next(iter(self.pods(f"batch.kubernetes.io/job-name={job}")), None),
        )

    def patch_pod_status(self, pod: str, status: dict[str, Any]) -> None:
        self.kubectl(
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )

    def finish_pod(self, pod: str, exit_code: int, message: str, reason: str = "") -> None:
        """Plays the kubelet: the trainer container ended with ``exit_code`` and ``message``."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.patch_pod_status(
            pod,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "image": "mlkube/runtime:test",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                                "message": message,
                                "startedAt": now,
                                "finishedAt": now,
                            }
                        },
                    }
                ],
            },
        )

    def make_ready(self, pod: str, container: str = "server") -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ready = {"status": "True", "lastTransitionTime": now}
        self.patch_pod_status(
            pod,
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", **ready}, {"type": "ContainersReady", **ready}],
                "containerStatuses": [
                    {
                        "name": container,
                        "image": "mlkube/runtime:test",
                        "imageID": "",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            },
        )

    def events_for(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.list("events")
            if e["involvedObject"].get("kind") == kind and e["involvedObject"].get("name") == name
        ]


def trainer_summary(
    version: int,
    score: float,
    *,
    metric: str = "f1_macro",
    higher: bool = True,
    namespace: str = "default",
    model: str = "m",
    slices: list[dict[str, Any]] | None = None,
) -> str:
    """A termination message as ``mlkube train`` writes it."""
    digest = f"{version:064x}"
    return json.dumps(
        {
            "version": version,
            "metric": metric,
            "higherIsBetter": higher,
            "score": score,
            "metrics": {metric: score},
            "slices": slices or [],
            "artifact": {
                "uri": f"pvc://mlkube-models/{namespace}/{model}/v{version}",
                "sha256": digest,
            },
            "rows": {"train": 100, "test": 50},
            "durationSeconds": 1.5,
        }
    )


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator watching all namespaces for a test module; stopped gracefully after."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess.start(control_plane, log, "--all-namespaces")
    yield process
    code = process.stop()
    assert code == 0, f"operator did not shut down cleanly ({code}):\n{process.tail()}"


@pytest.fixture
def kit(control_plane: ControlPlane, namespace: str) -> OperatorKit:
    return OperatorKit(control_plane, namespace)


def kstatus(obj: dict[str, Any] | None) -> str:
    """kstatus of a custom resource, written independently of the operator's code.

    sigs.k8s.io/cli-utils/pkg/kstatus: generation not yet observed or Reconciling=True →
    InProgress; Stalled=True → Failed; Ready present and not True → InProgress; else Current.
    """
    if obj is None:
        return "NotFound"
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return "InProgress"
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    if "Ready" in conditions and conditions["Ready"]["status"] != "True":
        return "InProgress"
    return "Current"
