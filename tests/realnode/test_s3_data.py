"""An S3 data source from the real trainer image (issue 19), through the operator.

Why: the runtime image once had no S3 client, so ``s3://`` data failed in every cluster
while every test passed: the node agent runs pods with the venv's Python, which had boto3.
Here the trainer is a container of the image built from ``images/runtime/Dockerfile``: it
reads iris as CSV from a bucket of the test's SeaweedFS, trains, and commits its version to
the same bucket; a predictor of the same image downloads the version and serves it.

The S3 server stays on loopback. The pods reach it as the Service ``s3`` of the test's
namespace (``Node.expose``): kube-proxy sends its ClusterIP to a relay on the bridge's
gateway address, which connects to the server's loopback port, and nothing else. The
operator (``mlkube operator`` on the host, as the e2e tier runs it, creating the Jobs and
Deployments of a cluster) allows exactly that endpoint; a Model naming another one is
refused before any pod exists.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sklearn.datasets
import yaml

from demo.loop import EXAMPLE, GROUP, MODEL, Loop
from demo.processes import start_operator, stop
from harness.controlplane import ControlPlane
from harness.node import IMAGE_REFERENCE_RUNTIME, NODE_NAME, Node
from harness.objectstore import ObjectStore
from mlkube.runtime.train.data import identifier
from nodeagent.kube import Kube
from realnode.workloads import RESOURCES, traceless_node

S3_PORT = 9000  # the Service's port, and the relay's on the bridge's gateway address
SECRET = "s3-credentials"
REFUSED_ENDPOINT = "http://127.0.0.2:9000"  # not allowed; loopback even if a refusal regressed


def iris_csv() -> bytes:
    """scikit-learn's iris with the column names the example's slices use."""
    frame = sklearn.datasets.load_iris(as_frame=True).frame
    frame.columns = [identifier(str(c)) for c in frame.columns]
    return bytes(frame.to_csv(index=False).encode())


def s3_model(name: str, data_uri: str, storage: dict[str, Any]) -> dict[str, Any]:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    model: dict[str, Any] = next(d for d in docs if d["kind"] == "Model")
    model["metadata"]["name"] = name
    model["spec"]["training"]["data"] = {"uri": data_uri, "target": "target"}
    model["spec"]["training"]["resources"] = RESOURCES
    model["spec"]["storage"] = storage
    return model


@pytest.fixture(scope="module")
def real_node(
    control_plane: ControlPlane,
    node_requirements: tuple[Path, dict[str, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Node]:
    """This module's node; after it, the check that the exposed server's relay, Service and
    EndpointSlice left no trace on the host either."""
    with traceless_node(control_plane, node_requirements, tmp_path_factory.mktemp("node")) as node:
        yield node


@pytest.fixture
def operator(
    real_node: Node, crds: list[str], node_namespace: str, tmp_path: Path
) -> Iterator[tuple[Path, str]]:
    """``mlkube operator -n <namespace>`` on the host, running the pods from the runtime
    image, allowing the exposed S3 endpoint; yields its log and that endpoint."""
    endpoint = f"http://s3.{node_namespace}.svc.cluster.local:{S3_PORT}"
    settings = {
        "MLKUBE_RUNTIME_IMAGE": IMAGE_REFERENCE_RUNTIME,
        "MLKUBE_IMAGE_PULL_POLICY": "Never",
        "MLKUBE_S3_ALLOWED_ENDPOINTS": endpoint,
    }
    log = tmp_path / "operator.log"
    proc = start_operator(real_node.plane.kubeconfig, node_namespace, log, settings)
    try:
        yield log, endpoint
    finally:
        stop(proc)


@pytest.mark.timeout(900)
def test_s3_data_trains_and_serves_from_the_runtime_image(
    real_node: Node,
    node_namespace: str,
    objectstore: ObjectStore,
    operator: tuple[Path, str],
) -> None:
    plane, ns = real_node.plane, node_namespace
    log, endpoint = operator
    data = iris_csv()
    data_key = f"{ns}/data/iris.csv"
    objectstore.client().put_object(Bucket=objectstore.bucket, Key=data_key, Body=data)
    cluster_ip = real_node.expose("s3", S3_PORT, ("127.0.0.1", objectstore.port), ns)
    plane.kubectl(
        "create", "secret", "generic", SECRET, "-n", ns,
        f"--from-literal=AWS_ACCESS_KEY_ID={objectstore.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={objectstore.secret_key}",
    )  # fmt: skip
    storage = {
        "uri": objectstore.uri(ns, "store"),
        "endpoint": endpoint,
        "region": "us-east-1",
        "addressingStyle": "path",
        "secretRef": {"name": SECRET},
    }
    data_uri = objectstore.uri(data_key)
    elsewhere = s3_model("elsewhere", data_uri, {**storage, "endpoint": REFUSED_ENDPOINT})
    items = [s3_model(MODEL, data_uri, storage), elsewhere]
    manifests = {"apiVersion": "v1", "kind": "List", "items": items}
    plane.kubectl("apply", "-n", ns, "-f", "-", input_text=json.dumps(manifests))

    kube = Kube(plane.kubeconfig)
    loop = Loop(
        kube, plane.bin_dir / "kubectl", plane.kubeconfig, ns,
        say=print, step_timeout=300, via_service=True,
    )  # fmt: skip
    try:
        run = loop.finished(f"{MODEL}-v1")
        assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"])[:3000]
        loop.wait("v1 serving", lambda: loop.model()["status"].get("servingVersion") == 1)
        answer = loop.serving(1)  # at each predictor pod's IP and three times at the ClusterIP
        refused = _refused(loop, "elsewhere")
        pods = kube.get(f"/api/v1/namespaces/{ns}/pods")["items"]
    except AssertionError:
        print(log.read_text()[-6000:])
        print(plane.kubectl("logs", "-n", ns, "-l", "mlkube.io/component=trainer",
                            "--tail=40", check=False).stdout)  # fmt: skip
        raise
    finally:
        kube.close()

    # The trainer and the predictor ran from the runtime image, on this node, with no claim.
    by_component = {p["metadata"]["labels"].get("mlkube.io/component"): p for p in pods}
    for component in ("trainer", "predictor"):
        pod = by_component[component]
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert [c["image"] for c in pod["spec"]["containers"]] == [IMAGE_REFERENCE_RUNTIME]
        assert not [v for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["AWS_ENDPOINT_URL"] == endpoint
    # The version in the bucket was trained on the object the test uploaded.
    version = f"{ns}/store/{ns}/{MODEL}/v1/metadata.json"
    metadata = json.loads(
        objectstore.client().get_object(Bucket=objectstore.bucket, Key=version)["Body"].read()
    )
    recorded = metadata["data"]
    assert (recorded["uri"], recorded["format"], recorded["rows"]) == (data_uri, "csv", 150)
    assert recorded["sha256"] == hashlib.sha256(data).hexdigest()
    assert answer["model_version"] == "1"
    # The Model naming an endpoint the operator does not allow got no run and no pod.
    assert "MLKUBE_S3_ALLOWED_ENDPOINTS" in refused["message"], refused
    assert loop.training_job("elsewhere-v1") is None
    assert not [p for p in pods if p["metadata"]["labels"].get("mlkube.io/model") == "elsewhere"]
    print(f"pods reached S3 at {cluster_ip}:{S3_PORT} (the Service s3), relayed to loopback")


def _refused(loop: Loop, name: str) -> dict[str, Any]:
    """The Ready condition of a Model the operator refused."""

    def condition() -> dict[str, Any] | None:
        model = loop.kube.find(f"{GROUP}/namespaces/{loop.ns}/models/{name}") or {}
        for found in (model.get("status") or {}).get("conditions") or []:
            if found["type"] == "Ready" and found["reason"] == "InvalidSpec":
                return dict(found)
        return None

    return loop.wait(f"Model {name} refused", condition)
