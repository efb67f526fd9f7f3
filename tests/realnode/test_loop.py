"""The whole loop on a real node, installed the way docs/install.md tells a kind user.

The images are the ones built from ``images/*/Dockerfile`` under the names the kind recipe
loads; the install runs the page's own ``kubectl`` lines (``realnode.install``), so the
operator runs as two Pods with the shipped RBAC, reaching the API server through the
``kubernetes`` Service. Then the same loop as ``make demo`` and ``tests/e2e``: train →
serve → drifted traffic → the drift CronJob → retrain → promote → reject → roll back, with
every trainer, predictor and drift check a container of the runtime image, and every
client call through the predictor's ClusterIP (kube-proxy) as well as its pod IPs.
Then a trainer over its memory limit: the kernel kills it, and the TrainingJob says so.
Then the predictor's HorizontalPodAutoscaler, with metrics-server built from its Go module
(``harness.metrics_server``): under a load sent to the ClusterIP it scales from 1 to at
least 2 replicas, and back to 1 after. When the module ends, the host snapshot after
the node stopped must equal the one before.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.loop import Loop
from harness import metrics_server
from harness.controlplane import ControlPlane
from harness.node import IMAGE_REFERENCE_OPERATOR, Node
from mlkube.api.names import predictor_name
from nodeagent.kube import Kube
from realnode.install import full_reference, read_recipe, run_kubectl_lines
from realnode.workloads import apply, create_store, get, iris_model, traceless_node

OPERATOR_NAMESPACE = "mlkube-system"


@pytest.fixture(scope="module")
def real_node(
    control_plane: ControlPlane,
    node_requirements: tuple[Path, dict[str, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    """This module's node, and after it the check that the whole loop left no trace: more
    pods, volumes, CronJob runs and operator Pods than test_cleanup's single pod."""
    with traceless_node(control_plane, node_requirements, tmp_path_factory.mktemp("node")) as node:
        yield node


@pytest.fixture(scope="module")
def installed(real_node: Node, node_requirements: Any) -> Iterator[Node]:
    """The node with the operator installed by the page's recipe."""
    _, images = node_requirements
    recipe = read_recipe()
    # `kind load docker-image <tags>`: the same images, into the node's containerd.
    loaded = {full_reference(tag) for tag in recipe.kind_loads}
    assert loaded <= set(images), f"the recipe loads {loaded}, the build made {set(images)}"
    real_node.ctr("images", "import", str(images[IMAGE_REFERENCE_OPERATOR]))
    run_kubectl_lines(real_node.plane, recipe)
    yield real_node


def test_loop_on_the_real_node_from_the_install_recipe(
    installed: Node, node_namespace: str
) -> None:
    plane = installed.plane
    pods = get(plane, "pods", "-n", OPERATOR_NAMESPACE)["items"]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        assert pod["spec"]["containers"][0]["image"] == "mlkube/operator:dev"
        assert pod["spec"]["serviceAccountName"] == "mlkube-operator"
        assert pod["spec"]["nodeName"] == installed.name

    create_store(installed, node_namespace, with_claim=False)  # the loop makes the claim
    kube = Kube(plane.kubeconfig)
    loop = Loop(
        kube, plane.bin_dir / "kubectl", plane.kubeconfig, node_namespace,
        say=print, step_timeout=300, via_service=True,
    )  # fmt: skip
    try:
        summary = loop.run()
    except AssertionError:
        print(plane.kubectl("logs", "-n", OPERATOR_NAMESPACE, "deployment/mlkube-operator",
                            "--tail=200", check=False).stdout)  # fmt: skip
        print(plane.kubectl("get", "pods,jobs", "-n", node_namespace, "-o", "wide",
                            check=False).stdout)  # fmt: skip
        raise
    finally:
        kube.close()

    print(f"the whole loop took {summary.total_seconds:.1f}s on the real node")
    by_version = {v["version"]: v for v in summary.versions}
    assert sorted(by_version) == [1, 2, 3]
    assert by_version[1]["trigger"] == "initial" and by_version[1]["promoted"]
    assert by_version[2]["trigger"] == "drift" and by_version[2]["promoted"]
    assert by_version[3]["promoted"] is False and by_version[3]["reason"]
    assert summary.monitor["datasetDrift"] is True and summary.monitor["samples"] >= 100
    assert set(summary.answers) == {"v1", "v2"}

    # Every workload ran from the runtime image the recipe loaded, on this node.
    workloads = get(plane, "pods", "-n", node_namespace)["items"]
    components = {p["metadata"]["labels"].get("mlkube.io/component") for p in workloads}
    assert {"trainer", "predictor"} <= components, components
    for pod in workloads:
        assert pod["spec"]["nodeName"] == installed.name
        assert {c["image"] for c in pod["spec"]["containers"]} == {"mlkube/runtime:dev"}
    jobs = get(plane, "jobs", "-n", node_namespace)["items"]
    assert any(j["metadata"]["name"] == "drift-now" for j in jobs)


def test_trainer_over_its_memory_limit_makes_the_training_job_say_oom_killed(
    installed: Node, node_namespace: str
) -> None:
    plane = installed.plane
    create_store(installed, node_namespace)
    model = iris_model(
        node_namespace,
        {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
    )
    model["metadata"].pop("uid")
    model["metadata"]["name"] = "iris-oom"
    model["spec"]["training"]["backoffLimit"] = 0
    apply(plane, model)

    def failed() -> dict[str, Any] | None:
        found = plane.kubectl(
            "get", "trainingjob", "iris-oom-v1", "-n", node_namespace, "-o", "json", check=False
        )
        if found.returncode != 0:
            return None
        status: dict[str, Any] = json.loads(found.stdout).get("status") or {}
        return status if status.get("phase") == "Failed" else None

    deadline = time.monotonic() + 300
    while (status := failed()) is None:
        assert time.monotonic() < deadline, "the TrainingJob iris-oom-v1 did not fail in 300 s"
        time.sleep(2)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "OOMKilled", ready
    assert status["message"].splitlines()[0] == (
        "the trainer was OOMKilled: it needed more memory than its limit (64Mi); "
        "raise spec.training.resources.limits.memory"
    )
    assert "exited with code 137" in status["message"]
    events = get(plane, "events", "-n", node_namespace)["items"]
    assert any(
        e["reason"] == "OOMKilled" and e["involvedObject"]["kind"] == "TrainingJob" for e in events
    ), [e["reason"] for e in events]


def _load(url: str, body: bytes, stop: threading.Event) -> None:
    """Predictions back to back until ``stop``: the host's client, to the ClusterIP."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    while not stop.is_set():
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()


@pytest.mark.timeout(900)  # training, metrics, a scale-up and a 30 s stabilized scale-down
def test_predictor_hpa_scales_up_under_load_to_its_cluster_ip_and_back(
    installed: Node, node_namespace: str
) -> None:
    if metrics_server.binary(installed.bin_dir) is None:
        pytest.skip("metrics-server is not built (a long first build): make test-realnode")
    plane = installed.plane
    metrics_server.start(installed)
    stop = threading.Event()
    try:
        create_store(installed, node_namespace)
        model = iris_model(node_namespace)
        model["metadata"].pop("uid")
        apply(plane, model)  # the example's autoscaling: 1 to 3 replicas at 70 % CPU
        name = predictor_name("iris")
        deadline = time.monotonic() + 300
        while (hpa := _hpa(plane, node_namespace, name)).get("currentReplicas") != 1 or not (
            hpa.get("currentMetrics") or [{}]
        )[0].get("resource", {}).get("current"):
            assert time.monotonic() < deadline, f"no HPA with pod metrics in 300 s: {hpa}"
            time.sleep(3)
        service = get(plane, "service", name, "-n", node_namespace)["spec"]
        url = f"http://{service['clusterIP']}:{service['ports'][0]['port']}/v1/models/iris:predict"
        body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]] * 64}).encode()
        for _ in range(4):
            threading.Thread(target=_load, args=(url, body, stop), daemon=True).start()
        deadline = time.monotonic() + 300
        while (hpa := _hpa(plane, node_namespace, name)).get("desiredReplicas", 0) < 2:
            assert time.monotonic() < deadline, f"the HPA did not scale up in 300 s: {hpa}"
            time.sleep(3)
        plane.kubectl("rollout", "status", f"deployment/{name}", "-n", node_namespace,
                      "--timeout=180s")  # fmt: skip
        ready = get(plane, "deployment", name, "-n", node_namespace)["status"]
        assert ready.get("readyReplicas", 0) >= 2, ready
        print(f"scaled up: {hpa}")
        stop.set()
        deadline = time.monotonic() + 300
        while (hpa := _hpa(plane, node_namespace, name)).get("desiredReplicas") != 1:
            assert time.monotonic() < deadline, f"the HPA did not scale back in 300 s: {hpa}"
            time.sleep(3)
        print(f"scaled back: {hpa}")
    finally:
        stop.set()
        metrics_server.stop(installed)


def _hpa(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    found = plane.kubectl("get", "hpa", name, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(found.stdout).get("status", {})
    return status
