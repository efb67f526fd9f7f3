"""Node agent: pod IPs, probes driving readiness and restarts, deletion and cleanup.

Two replicas of a Deployment listen on the same port at their own IPs; readiness probes
flip the pod's Ready condition and the EndpointSlice the real controller keeps; a failing
liveness probe restarts the container. Deleting a pod that ignores SIGTERM takes the grace
period and then SIGKILL; stopping the agent leaves no process, namespace or link behind.
A Job created through the real Job controller completes.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness.controlplane import ControlPlane
from nodeagent.kube import Obj
from nodeagent.network import ip
from nodeagent.testing import (
    condition,
    create,
    get_pod,
    python_pod,
    running_agent,
    wait_for,
    wait_phase,
)

SERVER = r"""
import http.server, os
state = {"ready": False, "alive": True}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200
        if self.path == "/ready":
            code = 200 if state["ready"] else 503
        elif self.path == "/live":
            code = 200 if state["alive"] else 500
        elif self.path == "/make-ready":
            state["ready"] = True
        elif self.path == "/break":
            state["alive"] = False
        self.send_response(code)
        self.end_headers()
        self.wfile.write(os.environ["HOSTNAME"].encode())
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def get(url: str, timeout: float = 20) -> str:
    """The body at ``url``, waiting for the server to listen (Running is not listening)."""

    def answer() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except ConnectionRefusedError:
            return None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ConnectionRefusedError):
                return None
            raise

    result: str = wait_for(f"an answer from {url}", answer, timeout)
    return result


def probe(path: str, period: int = 1, failures: int = 2) -> Obj:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "failureThreshold": failures}  # fmt: skip


def test_replicas_get_their_own_ip_and_probes_drive_readiness(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    template = python_pod(
        "web", SERVER, restart="Always",
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe=probe("/ready"),
        livenessProbe=probe("/live"),
    )  # fmt: skip
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }  # fmt: skip
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }  # fmt: skip
    with running_agent(control_plane.kubeconfig, tmp_path / "agent", namespace) as agent:
        kube = agent.kube
        kube.create(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)
        create(kube, namespace, service)

        def running_pods() -> list[Obj]:
            pods = kube.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
            running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
            return running if len(running) == 2 else []

        first, second = wait_for("two running replicas", running_pods)
        ips = {first["status"]["podIP"], second["status"]["podIP"]}
        assert len(ips) == 2
        assert all(a.startswith(agent.gateway.rsplit(".", 1)[0] + ".") for a in ips)
        for pod in (first, second):
            assert condition(pod, "Ready") == "False"
            assert get(f"http://{pod['status']['podIP']}:8080/") == pod["metadata"]["name"]

        ip_a, name_a = first["status"]["podIP"], first["metadata"]["name"]
        name_b = second["metadata"]["name"]
        get(f"http://{ip_a}:8080/make-ready")

        def ready(name: str, want: str) -> Obj | None:
            pod = get_pod(kube, namespace, name)
            return pod if pod and condition(pod, "Ready") == want else None

        pod_a = wait_for("replica A Ready", lambda: ready(name_a, "True"), timeout=30)
        assert condition(pod_a, "ContainersReady") == "True"
        assert pod_a["status"]["containerStatuses"][0]["ready"] is True
        assert condition(get_pod(kube, namespace, name_b) or {}, "Ready") == "False"

        def endpoints() -> dict[str, bool] | None:
            slices = kube.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                labelSelector="kubernetes.io/service-name=web",
            )["items"]
            found = {
                e["addresses"][0]: bool(e["conditions"].get("ready"))
                for s in slices for e in s.get("endpoints") or []
            }  # fmt: skip
            return found if found.get(ip_a) and len(found) == 2 else None

        assert wait_for("endpoint slice", endpoints, timeout=30) == {
            ip_a: True, second["status"]["podIP"]: False,
        }  # fmt: skip

        get(f"http://{ip_a}:8080/break")

        def restarted() -> Obj | None:
            pod = get_pod(kube, namespace, name_a)
            status = (pod or {}).get("status", {}).get("containerStatuses", [{}])[0]
            return (
                status if status.get("restartCount") == 1 and "running" in status["state"] else None
            )

        status = wait_for("liveness restart", restarted, timeout=30)
        assert status["lastState"]["terminated"]["exitCode"] in (137, 143)
        assert condition(get_pod(kube, namespace, name_a) or {}, "Ready") == "False"
        assert get(f"http://{ip_a}:8080/") == name_a, "same pod IP after a container restart"


def test_deletion_grace_job_and_cleanup(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    stubborn = python_pod(
        "stubborn",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(600)",
        restart="Always",
    )
    stubborn["spec"]["terminationGracePeriodSeconds"] = 3
    polite = python_pod("polite", "import time\ntime.sleep(600)", restart="Always")
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            **python_pod("once", "print('trained')")["spec"],
        }}},
    }  # fmt: skip
    with running_agent(control_plane.kubeconfig, tmp_path / "agent", namespace) as agent:
        kube = agent.kube
        subnet = agent.bridge.index
        node = agent.node_name
        create(kube, namespace, stubborn)
        create(kube, namespace, polite)
        kube.create(f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
        pids = {}
        for name in ("stubborn", "polite"):
            pod = wait_phase(kube, namespace, name, "Running")
            container_id = pod["status"]["containerStatuses"][0]["containerID"]
            pids[name] = int(container_id.rsplit("-", 1)[1])
            os.kill(pids[name], 0)

        def job_complete() -> bool:
            status = kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/once")["status"]
            return bool(status.get("succeeded") == 1 and status.get("completionTime"))

        wait_for("the Job to complete", job_complete, timeout=60)

        started = time.monotonic()
        kube.delete(f"/api/v1/namespaces/{namespace}/pods/stubborn")
        wait_for("stubborn pod gone", lambda: get_pod(kube, namespace, "stubborn") is None, 30)
        took = time.monotonic() - started
        assert took >= 3, f"SIGTERM was ignored, so deletion waits the grace period ({took:.1f}s)"
        assert not Path(f"/proc/{pids['stubborn']}").exists()

        started = time.monotonic()
        kube.delete(f"/api/v1/namespaces/{namespace}/pods/polite")
        wait_for("polite pod gone", lambda: get_pod(kube, namespace, "polite") is None, 30)
        assert time.monotonic() - started < 3, "a process that exits on SIGTERM goes at once"

        create(kube, namespace, python_pod("left", "import time\ntime.sleep(600)"))
        left = wait_phase(kube, namespace, "left", "Running")
        left_pid = int(left["status"]["containerStatuses"][0]["containerID"].rsplit("-", 1)[1])

    assert not Path(f"/proc/{left_pid}").exists()
    assert f"mlk{subnet}-" not in ip("netns", "list")
    assert f"mlkbr{subnet}" not in ip("link", "show")
    assert f"mlkv{subnet}h" not in ip("link", "show")
    leftover = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "agent")], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == ""
    assert control_plane.kubectl("get", "node", node, check=False).returncode != 0
