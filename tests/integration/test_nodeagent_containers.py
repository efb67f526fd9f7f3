"""Node agent: containers run as processes with the pod's command, env, volumes and exits.

Covers exit codes and termination messages (file and FallbackToLogsOnError), restarts
under OnFailure, env/envFrom from ConfigMaps, Secrets and the downward API, workingDir,
and every volume type the operator's pods use: a PVC provisioned as a directory, emptyDir
at /tmp, ConfigMap and Secret files, a read-only root, and the projected ServiceAccount
token, which the container uses to call the API server through the in-cluster address.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.controlplane import ControlPlane
from nodeagent import NodeAgent
from nodeagent.testing import create, python_pod, running_agent, wait_for, wait_phase


@pytest.fixture
def agent(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[NodeAgent]:
    with running_agent(control_plane.kubeconfig, tmp_path / "agent", namespace) as running:
        yield running


def terminated(pod: dict[str, object]) -> dict[str, object]:
    status = pod["status"]
    assert isinstance(status, dict)
    state: dict[str, object] = status["containerStatuses"][0]["state"]["terminated"]
    return state


def test_exit_codes_and_termination_messages(agent: NodeAgent, namespace: str) -> None:
    kube = agent.kube
    create(kube, namespace, python_pod(
        "ok", "open('/dev/termination-log', 'w').write('{\"score\": 0.97}')"
    ))  # fmt: skip
    create(kube, namespace, python_pod(
        "fails",
        "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)",
        terminationMessagePolicy="FallbackToLogsOnError",
    ))  # fmt: skip
    create(kube, namespace, python_pod(
        "custom-path", "open('/logs/msg', 'w').write('custom')\nraise SystemExit(2)",
        terminationMessagePath="/logs/msg",
    ))  # fmt: skip

    ok = wait_phase(kube, namespace, "ok", "Succeeded", "Failed")
    assert ok["status"]["phase"] == "Succeeded"
    assert terminated(ok)["exitCode"] == 0
    assert terminated(ok)["reason"] == "Completed"
    assert json.loads(str(terminated(ok)["message"])) == {"score": 0.97}
    assert ok["spec"]["nodeName"] == agent.node_name

    fails = wait_phase(kube, namespace, "fails", "Succeeded", "Failed")
    assert fails["status"]["phase"] == "Failed"
    assert terminated(fails)["exitCode"] == 3
    assert terminated(fails)["reason"] == "Error"
    message = str(terminated(fails)["message"])
    assert message.endswith("line 99") and "line 20\n" in message
    assert "line 19\n" not in message, "only the last 80 lines of the log"

    custom = wait_phase(kube, namespace, "custom-path", "Succeeded", "Failed")
    assert terminated(custom) | {"startedAt": "", "finishedAt": "", "containerID": ""} == {
        "exitCode": 2, "reason": "Error", "message": "custom",
        "startedAt": "", "finishedAt": "", "containerID": "",
    }  # fmt: skip


def test_on_failure_restarts_until_success(agent: NodeAgent, namespace: str) -> None:
    script = (
        "import os, sys\n"
        "marker = '/scratch/attempted'\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    sys.exit(7)\n"
        "print('second attempt')\n"
    )
    pod = python_pod(
        "flaky", script, restart="OnFailure",
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )  # fmt: skip
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    create(agent.kube, namespace, pod)
    done = wait_phase(agent.kube, namespace, "flaky", "Succeeded", "Failed")
    status = done["status"]["containerStatuses"][0]
    assert done["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert status["state"]["terminated"]["exitCode"] == 0


def test_env_volumes_and_service_account_token(
    agent: NodeAgent, namespace: str, control_plane: ControlPlane
) -> None:
    kube = agent.kube
    create(kube, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
        "data": {"MODE": "fast", "threshold.txt": "0.2"},
    })  # fmt: skip
    create(kube, namespace, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        "data": {"password": base64.b64encode(b"hunter2").decode()},
    })  # fmt: skip
    create(kube, namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "store"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    script = r"""
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(f"{sa}/token").read()
request = urllib.request.Request(
    f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
    data=b'{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}',
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
context = ssl.create_default_context(cafile=f"{sa}/ca.crt")
review = json.load(urllib.request.urlopen(request, context=context, timeout=10))
open("/mnt/store/model.txt", "w").write("weights")
open("/tmp/scratch", "w").write("x")
try:
    open("/root-write", "w")
    root_writable = True
except OSError:
    root_writable = False
result = {
    "user": review["status"]["userInfo"]["username"],
    "namespace": open(f"{sa}/namespace").read(),
    "env": {k: os.environ.get(k) for k in os.environ["WANTED"].split()},
    "cwd": os.getcwd(),
    "threshold": open("/etc/settings/threshold.txt").read(),
    "secret": open("/etc/creds/password").read(),
    "uid": os.getuid(),
    "root_writable": root_writable,
}
open("/dev/termination-log", "w").write(json.dumps(result))
"""
    field = lambda path: {"valueFrom": {"fieldRef": {"fieldPath": path}}}  # noqa: E731
    pod = python_pod(
        "envs",
        script,
        workingDir="/mnt/store",
        envFrom=[{"configMapRef": {"name": "settings"}},
                 {"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        env=[
            {"name": "PASSWORD",
             "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD", **field("metadata.name")},
            {"name": "POD_IP", **field("status.podIP")},
            {"name": "NS", **field("metadata.namespace")},
            {"name": "MERGED", "value": "$(MODE)-$(POD)"},
            {"name": "WANTED", "value": "MODE CFG_MODE PASSWORD POD POD_IP NS MERGED"},
        ],
        volumeMounts=[
            {"name": "store", "mountPath": "/mnt/store"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "settings", "mountPath": "/etc/settings", "readOnly": True},
            {"name": "creds", "mountPath": "/etc/creds", "readOnly": True},
        ],
    )  # fmt: skip
    pod["spec"]["volumes"] = [
        {"name": "store", "persistentVolumeClaim": {"claimName": "store"}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
    ]
    create(kube, namespace, pod)
    done = wait_phase(kube, namespace, "envs", "Succeeded", "Failed")
    state = terminated(done)
    assert done["status"]["phase"] == "Succeeded", state
    result = json.loads(str(state["message"]))
    assert result == {
        "user": f"system:serviceaccount:{namespace}:default",
        "namespace": namespace,
        "env": {
            "MODE": "fast", "CFG_MODE": "fast", "PASSWORD": "hunter2", "POD": "envs",
            "POD_IP": done["status"]["podIP"], "NS": namespace, "MERGED": "fast-envs",
        },
        "cwd": "/mnt/store",
        "threshold": "0.2",
        "secret": "hunter2",
        "uid": 1000,
        "root_writable": False,
    }  # fmt: skip
    claim = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/store")
    assert claim["status"]["phase"] == "Bound"
    volume = kube.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
    assert Path(volume["spec"]["hostPath"]["path"], "model.txt").read_text() == "weights"
    assert not Path("/root-write").exists() and not Path("/mnt/store").exists()


def test_missing_configmap_waits_with_reason(agent: NodeAgent, namespace: str) -> None:
    pod = python_pod(
        "waits", "print('ran')",
        env=[{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}],
    )  # fmt: skip
    create(agent.kube, namespace, pod)

    def waiting_reason() -> str:
        found = agent.kube.get(f"/api/v1/namespaces/{namespace}/pods/waits")
        statuses = found.get("status", {}).get("containerStatuses", [{}])
        return str(statuses[0].get("state", {}).get("waiting", {}).get("reason", ""))

    assert wait_for("a config error", lambda: waiting_reason() == "CreateContainerConfigError")
    create(agent.kube, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}, "data": {"x": "1"},
    })  # fmt: skip
    assert wait_phase(agent.kube, namespace, "waits", "Succeeded")["status"]["phase"]
