"""Helpers for tests that run pods through the agent: pod manifests and waiting on them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nodeagent.agent import AgentSettings, NodeAgent
from nodeagent.kube import Kube, Obj

RUNTIME_IMAGE = "mlkube/runtime:0.1.0"
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@contextmanager
def running_agent(kubeconfig: Path, state_dir: Path, *namespaces: str) -> Iterator[NodeAgent]:
    agent = NodeAgent.start(
        AgentSettings(kubeconfig=kubeconfig, state_dir=state_dir, namespaces=namespaces)
    )
    try:
        yield agent
    finally:
        agent.stop()


def python_pod(name: str, script: str, *, restart: str = "Never", **container: Any) -> Obj:
    """A restricted-profile pod whose one container runs ``python -c script``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": RUNTIME_IMAGE,
                    "command": ["python", "-c", script],
                    "securityContext": RESTRICTED_CONTAINER,
                    **container,
                }
            ],
        },
    }


def create(kube: Kube, namespace: str, obj: Obj) -> Obj:
    plural = {"Pod": "pods", "ConfigMap": "configmaps", "Secret": "secrets",
              "PersistentVolumeClaim": "persistentvolumeclaims", "Service": "services"}  # fmt: skip
    return kube.create(f"/api/v1/namespaces/{namespace}/{plural[obj['kind']]}", obj)


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.2
) -> Any:
    """Polls ``probe`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def get_pod(kube: Kube, namespace: str, name: str) -> Obj | None:
    return kube.find(f"/api/v1/namespaces/{namespace}/pods/{name}")


def wait_phase(kube: Kube, namespace: str, name: str, *phases: str, timeout: float = 60) -> Obj:
    def reached() -> Obj | None:
        pod = get_pod(kube, namespace, name)
        return pod if pod and pod.get("status", {}).get("phase") in phases else None

    result: Obj = wait_for(f"pod {name} in {phases}", reached, timeout)
    return result


def condition(pod: Obj, kind: str) -> str:
    for item in pod.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return str(item["status"])
    return ""
