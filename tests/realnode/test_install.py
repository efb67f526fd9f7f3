"""The operator installed the way docs/install.md tells a kind user, then the iris example.

The images are the ones built from ``images/*/Dockerfile`` under the names the kind recipe
loads (``mlkube/operator:dev``, ``mlkube/runtime:dev``); the install is the recipe's
``kubectl apply --server-side -k manifests/overlays/local`` and rollout status, with the
shipped RBAC. The operator then runs as a Pod, reaches the API server through the
``kubernetes`` Service, trains iris in a trainer Job from the runtime image and serves it;
the prediction goes through the predictor's ClusterIP.
"""

from __future__ import annotations

import json
import time
from typing import Any

from harness.controlplane import REPO
from harness.node import IMAGE_REFERENCE_OPERATOR, Node
from realnode.test_serving import post, programmed
from realnode.workloads import create_store, get

INSTALL = ["apply", "--server-side", "-k", str(REPO / "manifests" / "overlays" / "local")]
ROLLOUT = ["-n", "mlkube-system", "rollout", "status", "deployment/mlkube-operator"]


def _model(plane: Any, namespace: str) -> dict[str, Any]:
    return get(plane, "model", "iris", "-n", namespace)


def test_operator_installed_like_kind_trains_and_serves_iris(
    real_node: Node, node_namespace: str, node_requirements: Any
) -> None:
    plane = real_node.plane
    _, images = node_requirements
    real_node.ctr("images", "import", str(images[IMAGE_REFERENCE_OPERATOR]))

    plane.kubectl(*INSTALL)
    plane.kubectl(*ROLLOUT, "--timeout=240s")
    pods = get(plane, "pods", "-n", "mlkube-system")["items"]
    assert pods and all(p["spec"]["containers"][0]["image"] == "mlkube/operator:dev" for p in pods)
    assert all(p["spec"]["serviceAccountName"] == "mlkube-operator" for p in pods)

    create_store(real_node, node_namespace)
    plane.kubectl(
        "apply", "-n", node_namespace, "-f", str(REPO / "manifests" / "examples" / "iris.yaml")
    )
    deadline = time.monotonic() + 300
    while _model(plane, node_namespace).get("status", {}).get("servingVersion") != 1:
        if time.monotonic() > deadline:
            logs = plane.kubectl(
                "logs", "-n", "mlkube-system", "deployment/mlkube-operator", check=False
            ).stdout[-4000:]
            status = json.dumps(_model(plane, node_namespace).get("status", {}))[:2000]
            raise AssertionError(f"iris not serving v1 in 300 s\n{status}\n{logs}")
        time.sleep(2)

    trainer = get(plane, "pods", "-n", node_namespace, "-l", "job-name")["items"][0]
    assert trainer["spec"]["containers"][0]["image"] == "mlkube/runtime:dev"
    assert trainer["spec"]["nodeName"] == real_node.name

    services = get(plane, "services", "-n", node_namespace)["items"]
    svc = next(s for s in services if s["spec"].get("clusterIP") not in (None, "None"))
    cluster_ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["port"]
    plane.kubectl(
        "rollout", "status", f"deployment/{svc['metadata']['name']}", "-n", node_namespace,
        "--timeout=180s",
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not programmed(cluster_ip, port):
        assert time.monotonic() < deadline, f"kube-proxy did not program {cluster_ip}:{port}"
        time.sleep(0.5)
    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    answer = post(f"http://{cluster_ip}:{port}/v1/models/iris:predict", {"instances": rows})
    assert len(answer["predictions"]) == 2 and answer["predictions"][0] != answer["predictions"][1]
