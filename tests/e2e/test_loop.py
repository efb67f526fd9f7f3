"""End to end: the iris loop through real Jobs, Deployments and CronJobs whose pods run.

The operator runs as ``mlkube operator`` and the node agent runs the pods it creates
(trainer Jobs, the predictor Deployment, the drift CronJob's Job) as local processes with
their own IPs. The loop itself lives in ``demo.loop`` so ``make demo`` shows the same
thing; this test checks the outcome of every step and prints how long the loop took.
"""

from __future__ import annotations

from pathlib import Path

from demo.loop import Loop, S3Store
from demo.processes import start_node_agent, start_operator, stop
from harness.controlplane import ControlPlane
from harness.objectstore import ObjectStore
from nodeagent.kube import Kube


def test_train_serve_drift_retrain_reject_rollback(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    kube = Kube(control_plane.kubeconfig)
    agent = start_node_agent(
        control_plane.kubeconfig, tmp_path / "agent", namespace, tmp_path / "agent.log"
    )
    try:
        operator = start_operator(control_plane.kubeconfig, namespace, tmp_path / "operator.log")
        try:
            loop = Loop(
                kube, control_plane.bin_dir / "kubectl", control_plane.kubeconfig, namespace,
                say=print,
            )  # fmt: skip
            try:
                summary = loop.run()
            except AssertionError:
                print((tmp_path / "operator.log").read_text()[-6000:])
                print((tmp_path / "agent.log").read_text()[-4000:])
                raise
        finally:
            stop(operator)
    finally:
        stop(agent)
        kube.close()

    print(f"the whole loop took {summary.total_seconds:.1f}s")
    by_version = {v["version"]: v for v in summary.versions}
    assert sorted(by_version) == [1, 2, 3]
    assert by_version[1]["trigger"] == "initial" and by_version[1]["promoted"]
    assert by_version[2]["trigger"] == "drift" and by_version[2]["promoted"]
    assert by_version[3]["promoted"] is False and by_version[3]["reason"]
    assert by_version[3]["score"] < by_version[2]["score"]
    assert summary.monitor["datasetDrift"] is True and summary.monitor["samples"] >= 100
    assert set(summary.answers) == {"v1", "v2"}
    assert summary.total_seconds < 300


# Where pods reach the test's S3 server: a Service-like address the node agents relay to it.
S3_IN_PODS = ("10.96.0.10", 9000)


def test_the_loop_on_an_s3_store(
    control_plane: ControlPlane,
    crds: list[str],
    namespace: str,
    tmp_path: Path,
    objectstore: ObjectStore,
) -> None:
    """The same loop with the Model's store in a bucket: no pod mounts a claim, the two
    predictor replicas run on two nodes, and the drift check reads its logs from S3."""
    bucket = objectstore.bucket
    relay = f"{S3_IN_PODS[0]}:{S3_IN_PODS[1]}={objectstore.port}"
    kube = Kube(control_plane.kubeconfig)
    agents = [
        start_node_agent(
            control_plane.kubeconfig,
            tmp_path / f"agent-{i}",
            namespace,
            tmp_path / f"agent-{i}.log",
            "--node-name",
            f"s3-node-{i}",
            "--relay",
            relay,
        )
        for i in (1, 2)
    ]
    settings = {
        "MLKUBE_S3_ENDPOINT": f"http://{S3_IN_PODS[0]}:{S3_IN_PODS[1]}",
        "MLKUBE_S3_ADDRESSING_STYLE": "path",
        "MLKUBE_S3_REGION": "us-east-1",
    }
    s3 = S3Store(
        bucket=bucket,
        access_key=objectstore.access_key,
        secret_key=objectstore.secret_key,
        objects=lambda prefix: _keys(objectstore, prefix),
    )
    try:
        log = tmp_path / "operator.log"
        operator = start_operator(control_plane.kubeconfig, namespace, log, settings)
        try:
            loop = Loop(
                kube, control_plane.bin_dir / "kubectl", control_plane.kubeconfig, namespace,
                say=print, s3=s3,
            )  # fmt: skip
            try:
                summary = loop.run()
                spread = {p["spec"]["nodeName"] for p in loop.ready_predictors()}
                pods = kube.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
            except AssertionError:
                print(log.read_text()[-6000:])
                raise
        finally:
            stop(operator)
    finally:
        for agent in agents:
            stop(agent)
        kube.close()

    print(f"the whole loop on s3://{bucket} took {summary.total_seconds:.1f}s")
    assert sorted(v["version"] for v in summary.versions) == [1, 2, 3]
    assert summary.monitor["datasetDrift"] is True and summary.monitor["samples"] >= 100
    assert spread == {"s3-node-1", "s3-node-2"}
    claims = [
        (p["metadata"]["name"], v["name"])
        for p in pods
        for v in p["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    ]
    assert claims == []
    stored = _keys(objectstore, f"{namespace}/{namespace}/iris/")
    assert any(key.endswith("v2/metadata.json") for key in stored)
    assert any("/drift/" in key for key in stored), "the drift check wrote no report to S3"


def _keys(store: ObjectStore, prefix: str) -> list[str]:
    pages = (
        store.client().get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
    )
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
