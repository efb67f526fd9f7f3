"""The trainer on a real node: the operator's Job, the runtime image, real containers.

What the node agent cannot show: the image built from ``images/runtime/Dockerfile`` runs
``mlkube train``, as UID 65532, with a read-only root filesystem, under the memory and CPU
limits of its spec, read from the host side (containerd's task PID, its ``/proc`` entry
and its cgroup files), not from what the container believes.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

from harness.node import NODE_NAME, Node
from realnode.workloads import (
    RESOURCES,
    SETTINGS,
    apply,
    container_pid,
    create_store,
    first_log_line,
    get,
    host_cgroup_file,
    job_pod,
    trainer_job,
    wait_job,
)

# Runs in the trainer's container, with its security context, mounts and limits: tries to
# write to / and to /tmp (the emptyDir), then stays up so the host can read its state.
PROBE = """
import errno, json, os, sys, time
def write(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        return 0
    except OSError as error:
        return error.errno
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "root": write("/probe"),
                  "tmp": write("/tmp/probe"), "python": sys.version.split()[0]}), flush=True)
time.sleep(600)
"""


def test_operator_trainer_job_trains_iris_from_the_runtime_image(
    real_node: Node, node_namespace: str
) -> None:
    plane = real_node.plane
    store = create_store(real_node, node_namespace)
    job = trainer_job(node_namespace, "iris-v1")
    apply(plane, job)
    name = job["metadata"]["name"]

    assert wait_job(plane, node_namespace, name) == "Complete", plane.kubectl(
        "logs", f"job/{name}", "-n", node_namespace, check=False
    ).stdout
    pod = job_pod(plane, node_namespace, name)
    assert pod["spec"]["nodeName"] == NODE_NAME
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    # The trainer's result travels in its termination message, as the operator reads it.
    message = json.loads(terminated["message"])
    assert message["version"] == 1
    # The version landed on the claim's volume, written as the pods' UID.
    written = [p for p in store.rglob("*") if p.is_file()]
    assert written, f"nothing written under {store}"
    assert {p.stat().st_uid for p in written} == {SETTINGS.run_as_user}


def test_trainer_container_runs_as_65532_read_only_under_its_limits(
    real_node: Node, node_namespace: str
) -> None:
    plane = real_node.plane
    create_store(real_node, node_namespace)
    job = trainer_job(node_namespace, "iris-probe")
    pod_spec = job["spec"]["template"]["spec"]
    pod_spec["terminationGracePeriodSeconds"] = 1  # the probe ignores SIGTERM (PID 1)
    container = pod_spec["containers"][0]
    container["command"] = ["python", "-c", PROBE]
    container["args"] = []
    apply(plane, job)
    name = job["metadata"]["name"]

    pod = job_pod(plane, node_namespace, name)
    logs = first_log_line(plane, node_namespace, pod["metadata"]["name"])
    report = json.loads(logs)
    # Inside: the image's Python (bookworm's 3.11), the UID, and a root that refuses writes.
    assert report["python"].startswith("3.11.")
    assert (report["uid"], report["gid"]) == (65532, 65532)
    assert report["root"] == errno.EROFS
    assert report["tmp"] == 0  # the emptyDir at /tmp is the one writable place

    # Outside: the host's view of the same process.
    pod = get(plane, "pod", pod["metadata"]["name"], "-n", node_namespace)
    pid = container_pid(real_node, pod, "trainer")
    proc = Path(f"/proc/{pid}")
    status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines())
    assert status["Uid"].split() == ["65532"] * 4
    assert status["Gid"].split() == ["65532"] * 4
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"].strip(), 16) == 0
    assert int(status["Seccomp"].strip()) == 2  # filter mode: RuntimeDefault
    root_mount = next(
        line.split()
        for line in (proc / "mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    assert "ro" in root_mount[5].split(",")

    limits = RESOURCES["limits"]
    memory_limit = int(host_cgroup_file(pid, "memory", "memory.limit_in_bytes").read_text())
    assert memory_limit == 768 * 1024 * 1024 == _bytes(limits["memory"])
    quota = int(host_cgroup_file(pid, "cpu", "cpu.cfs_quota_us").read_text())
    period = int(host_cgroup_file(pid, "cpu", "cpu.cfs_period_us").read_text())
    assert quota / period == 0.5  # limits.cpu 500m
    shares = int(host_cgroup_file(pid, "cpu", "cpu.shares").read_text())
    assert shares == 256  # requests.cpu 250m = 1024 * 0.25


def test_trainer_over_its_memory_limit_is_oom_killed(real_node: Node, node_namespace: str) -> None:
    """64 MiB cannot hold scikit-learn and pandas: the kernel kills the trainer in its cgroup."""
    plane = real_node.plane
    create_store(real_node, node_namespace)
    tight = {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}
    job = trainer_job(node_namespace, "iris-oom", tight)
    job["spec"]["backoffLimit"] = 0
    apply(plane, job)
    name = job["metadata"]["name"]

    assert wait_job(plane, node_namespace, name) == "Failed"
    pod = job_pod(plane, node_namespace, name)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated
    assert terminated["exitCode"] == 137


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)
