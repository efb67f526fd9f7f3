"""Workloads for the real node, made by the operator's own builders.

``trainer_job`` is the Job the operator creates for a TrainingJob of the iris example, with
the runtime image built from ``images/runtime/Dockerfile``; its store claim is bound to a
hostPath PersistentVolume in the node's work directory, owned by the pods' UID.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from harness.controlplane import REPO, ControlPlane
from harness.node import IMAGE_REFERENCE_OPERATOR, IMAGE_REFERENCE_RUNTIME, Node, host_snapshot
from mlkube.controller.builders.training import build_trainer_job
from mlkube.controller.settings import OperatorSettings

SETTINGS = replace(
    OperatorSettings(), runtime_image=IMAGE_REFERENCE_RUNTIME, image_pull_policy="Never"
)
RESOURCES = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"cpu": "500m", "memory": "768Mi"},
}


def pods_images(images: dict[str, Path]) -> dict[str, Path]:
    """The sandbox and runtime images: what the tier's pods run (the operator's is not yet)."""
    return {ref: path for ref, path in images.items() if ref != IMAGE_REFERENCE_OPERATOR}


@contextlib.contextmanager
def traceless_node(
    plane: ControlPlane, requirements: tuple[Path, dict[str, Path]], workdir: Path
) -> Iterator[Node]:
    """A module's node, and after it stopped, the check that the host snapshot equals the
    one taken before it started (a module that adds more to a node than test_cleanup's pod)."""
    bin_dir, images = requirements
    before = host_snapshot(bin_dir)
    node = Node.start(plane, workdir, bin_dir=bin_dir, images=pods_images(images))
    try:
        yield node
    finally:
        node.stop()
    after = host_snapshot(bin_dir)
    differs = {key: (before[key], after[key]) for key in before if after[key] != before[key]}
    assert not differs, f"the node left traces: {differs}"


def iris_model(namespace: str, resources: dict[str, Any] | None = None) -> dict[str, Any]:
    docs = list(yaml.safe_load_all((REPO / "manifests" / "examples" / "iris.yaml").read_text()))
    model: dict[str, Any] = copy.deepcopy(next(d for d in docs if d["kind"] == "Model"))
    model["metadata"].update(namespace=namespace, uid="00000000-0000-0000-0000-000000000001")
    model["spec"]["training"]["resources"] = resources or RESOURCES
    return model


def training_job(model: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "namespace": model["metadata"]["namespace"],
            "uid": "00000000-0000-0000-0000-000000000002",
        },
        "spec": {"modelRef": {"name": model["metadata"]["name"]}, "trigger": "manual"},
    }


def trainer_job(
    namespace: str, name: str, resources: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The operator's trainer Job, without owner references (no TrainingJob object exists)."""
    model = iris_model(namespace, resources)
    job = build_trainer_job(model, training_job(model, name), 1, SETTINGS)
    job["metadata"].pop("ownerReferences", None)
    job["spec"].pop("ttlSecondsAfterFinished", None)  # kept for the test to read
    return job


def create_store(
    node: Node, namespace: str, claim: str = "mlkube-models", *, with_claim: bool = True
) -> Path:
    """A hostPath PersistentVolume under the node's work directory, bound to ``claim``
    (and the claim itself, unless the caller creates it as a user would)."""
    return store_volume(node.plane, node.workdir, namespace, claim, with_claim=with_claim)


def store_volume(
    plane: ControlPlane, workdir: Path, namespace: str, claim: str, *, with_claim: bool
) -> Path:
    """``create_store`` for a node run by another process (``make demo``'s)."""
    directory = workdir / "volumes" / namespace
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, SETTINGS.run_as_user, SETTINGS.run_as_user)
    # What a volume that honours fsGroup looks like: group-writable and setgid. The kubelet
    # creates each subPath directory as root with the volume root's mode, so without this
    # the pods' GID could not write under /mnt/model (hostPath volumes get no fsGroup).
    directory.chmod(0o2775)
    pv_name = f"{namespace}-{claim}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": str(directory), "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": claim},
        },
    }
    claim_object = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": pv_name,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    apply(plane, volume, *([claim_object] if with_claim else []))
    return directory


def apply(plane: ControlPlane, *objects: dict[str, Any]) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    plane.kubectl("apply", "-f", "-", input_text=json.dumps(items))


def get(plane: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return result


def job_pod(plane: ControlPlane, namespace: str, job: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods: list[dict[str, Any]] = get(plane, "pods", "-n", namespace, "-l", f"job-name={job}")[
            "items"
        ]
        if pods:
            return pods[0]
        time.sleep(0.5)
    raise AssertionError(f"job {job} created no pod in {timeout}s")


def first_log_line(plane: ControlPlane, namespace: str, pod: str, timeout: float = 120) -> str:
    """The first line a pod's container printed, once it has printed one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = plane.kubectl("logs", pod, "-n", namespace, check=False)
        if logs.returncode == 0 and logs.stdout.strip():
            return logs.stdout.strip().splitlines()[0]
        time.sleep(0.5)
    raise AssertionError(f"pod {pod} printed nothing in {timeout}s")


def wait_job(plane: ControlPlane, namespace: str, job: str, timeout: float = 240) -> str:
    """Waits until the Job completes or fails; returns "Complete" or "Failed"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = get(plane, "job", job, "-n", namespace).get("status", {})
        for condition in status.get("conditions", []):
            if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
                return str(condition["type"])
        time.sleep(1)
    pods = plane.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    raise AssertionError(f"job {job} did not finish in {timeout}s\n{pods}")


def container_pid(node: Node, pod: dict[str, Any], container: str) -> int:
    """The host PID of a running container, from containerd (the CRI's own record)."""
    for status in pod["status"].get("containerStatuses", []):
        if status["name"] == container and status.get("containerID"):
            container_id = status["containerID"].split("://", 1)[1]
            for line in node.ctr("tasks", "ls").splitlines()[1:]:
                words = line.split()
                if words and words[0] == container_id:
                    return int(words[1])
    raise AssertionError(f"no running task for container {container}")


def host_cgroup_file(pid: int, controller: str, filename: str) -> Path:
    """A cgroup v1 file of the process's ``controller`` hierarchy (or the v2 one)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            root = Path("/sys/fs/cgroup")
            for mount in (root / controllers, root / controller):
                candidate = mount / path.lstrip("/") / filename
                if candidate.exists():
                    return candidate
    raise AssertionError(f"no {controller} cgroup file {filename} for pid {pid}")


def run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout
