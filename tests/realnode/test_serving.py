"""The predictor on a real node, reached through its Service's ClusterIP via kube-proxy.

The trainer Job trains iris into the store; the operator's predictor Deployment and
Service serve it from the runtime image; the host sends a prediction to the ClusterIP
(only once kube-proxy has programmed it: the node's OUTPUT chain rejects anything to the
Service range that would leave the machine) and to the pod IP.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from harness.node import Node, service_programmed
from mlkube.controller.builders.predictor import (
    build_predictor_deployment,
    build_predictor_service,
)
from realnode.workloads import (
    SETTINGS,
    apply,
    create_store,
    get,
    iris_model,
    job_pod,
    trainer_job,
    wait_job,
)

SERVE_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "768Mi"},
}


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_predictor_answers_through_its_cluster_ip(real_node: Node, node_namespace: str) -> None:
    plane = real_node.plane
    create_store(real_node, node_namespace)
    job = trainer_job(node_namespace, "iris-v1")
    apply(plane, job)
    assert wait_job(plane, node_namespace, job["metadata"]["name"]) == "Complete"
    pod = job_pod(plane, node_namespace, job["metadata"]["name"])
    summary = json.loads(pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"])

    model = iris_model(node_namespace)
    model["spec"]["serving"]["resources"] = SERVE_RESOURCES
    deployment = build_predictor_deployment(model, 1, str(summary.get("sha256") or ""), SETTINGS)
    service = build_predictor_service(model)
    for manifest in (deployment, service):
        manifest["metadata"].pop("ownerReferences", None)
    apply(plane, deployment, service)
    name = deployment["metadata"]["name"]
    plane.kubectl("rollout", "status", f"deployment/{name}", "-n", node_namespace, "--timeout=180s")

    svc = get(plane, "service", name, "-n", node_namespace)
    cluster_ip, port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["port"]
    deadline = time.monotonic() + 60
    while not service_programmed(cluster_ip, port):
        assert time.monotonic() < deadline, f"kube-proxy did not program {cluster_ip}:{port}"
        time.sleep(0.5)

    rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    through_service = post(
        f"http://{cluster_ip}:{port}/v1/models/iris:predict", {"instances": rows}
    )
    # A setosa and a virginica: two different classes.
    predictions = through_service["predictions"]
    assert len(predictions) == 2 and predictions[0] != predictions[1], through_service

    selector = ",".join(
        f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
    )
    pods = get(plane, "pods", "-n", node_namespace, "-l", selector)
    pod_ip = pods["items"][0]["status"]["podIP"]
    assert pod_ip.startswith("10.245.0.")
    direct = post(f"http://{pod_ip}:8080/v1/models/iris:predict", {"instances": rows})
    assert direct["predictions"] == through_service["predictions"]
