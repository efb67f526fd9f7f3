"""End to end: the iris loop through real Jobs, Deployments and CronJobs whose pods run.

The operator runs as ``mlkube operator`` and the node agent runs the pods it creates
(trainer Jobs, the predictor Deployment, the drift CronJob's Job) as local processes with
their own IPs. The loop itself lives in ``demo.loop`` so ``make demo`` shows the same
thing; this test checks the outcome of every step and prints how long the loop took.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from demo.canary import CanaryLeg
from demo.loop import Loop, S3Store, Summary
from demo.processes import agent_and_operator
from harness.controlplane import ControlPlane
from harness.objectstore import ObjectStore
from nodeagent.kube import Kube

T = TypeVar("T")


def with_cluster(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    leg: Callable[[Loop], T],
    *,
    nodes: tuple[tuple[str, ...], ...] = ((),),
    settings: dict[str, str] | None = None,
    s3: S3Store | None = None,
) -> T:
    """Runs ``leg`` with node agents and ``mlkube operator`` on the namespace (see
    ``agent_and_operator``)."""
    kube = Kube(control_plane.kubeconfig)
    try:
        with agent_and_operator(
            control_plane.kubeconfig, namespace, tmp_path, nodes=nodes, settings=settings
        ):
            loop = Loop(
                kube, control_plane.bin_dir / "kubectl", control_plane.kubeconfig, namespace,
                say=print, s3=s3,
            )  # fmt: skip
            return leg(loop)
    finally:
        kube.close()


# The loop (about 2-4 minutes on a shared 2-core machine) and its canary leg (2-3 more).
@pytest.mark.timeout(900)
def test_train_serve_drift_retrain_reject_rollback(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    def leg(loop: Loop) -> tuple[Summary, set[str], Any]:
        summary = loop.run()
        answered = set(summary.answers)  # before the canary leg adds its own
        # ---- the canary leg (issue 14): its own steps, checked below ----------------------
        return summary, answered, CanaryLeg(loop).run()

    summary, answered, canary = with_cluster(control_plane, namespace, tmp_path, leg)

    print(f"the whole loop took {summary.total_seconds:.1f}s")
    by_version = {v["version"]: v for v in summary.versions}
    assert sorted(by_version) == [1, 2, 3]
    assert by_version[1]["trigger"] == "initial" and by_version[1]["promoted"]
    assert by_version[2]["trigger"] == "drift" and by_version[2]["promoted"]
    assert by_version[3]["promoted"] is False and by_version[3]["reason"]
    assert by_version[3]["score"] < by_version[2]["score"]
    assert summary.monitor["datasetDrift"] is True and summary.monitor["samples"] >= 100
    assert answered == {"v1", "v2"}
    assert summary.total_seconds < 300

    # ---- the canary leg ------------------------------------------------------------------
    # A good candidate passes the analysis and is promoted; a shifted one is rolled back
    # with its figures; the stream through the Service never failed meanwhile.
    assert canary.good["decision"] == "Promoted" and canary.good["rollout"]["phase"] == "Promoted"
    passed = {v["check"]: v for v in canary.good["rollout"]["verdicts"]}
    assert all(v["passed"] for v in passed.values()) and passed["requests"]["candidate"] >= 30
    assert canary.bad["decision"] == "Rejected" and canary.bad["rollout"]["phase"] == "RolledBack"
    failed = [v for v in canary.bad["rollout"]["verdicts"] if not v["passed"]]
    assert [v["check"] for v in failed] == ["predictionShift"], failed
    assert failed[0]["candidate"] > 0.2
    assert [r["canary"]["phase"] for r in canary.rollouts[-2:]] == ["Promoted", "RolledBack"]
    assert any(e.startswith("CanaryPromoted: canary v4 passed") for e in canary.events)
    assert any(e.startswith("CanaryRolledBack: canary v5 rolled back") for e in canary.events)
    assert canary.stream.failures == [], canary.stream.failures[:10]
    assert canary.stream.total > 100
    assert {"2", "4", "5"} <= set(canary.stream.answers), canary.stream.answers


# -- issue 17: monitoring with ground truth (its own Model and Monitor) ---------------------
def test_labels_lower_the_live_score_and_a_performance_run_learns_from_them(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    from demo.labels import LabelsLeg

    summary = with_cluster(control_plane, namespace, tmp_path, lambda loop: LabelsLeg(loop).run())

    v1, v2 = summary.scores[1], summary.scores[2]
    print(f"live accuracy on the shifted traffic: v1 {v1:.4f}, v2 {v2:.4f}")
    by_version = {v["version"]: v for v in summary.versions}
    assert by_version[2]["trigger"] == "performance" and by_version[2]["promoted"]
    assert summary.live_rows == 300
    assert summary.scores[1] < 0.85 <= summary.scores[2]
    assert summary.scores[2] - summary.scores[1] >= 0.1
    assert summary.labels == {1: 300, 2: 300}


# -- issue 15: the same loop on an S3 store --------------------------------------------------
# Where pods reach the test's S3 server: a Service-like address the node agents put on each
# pod's own loopback, inside the namespaces they create, and relay to the server on
# 127.0.0.1. Nothing outside those namespaces ever connects to it (network safety).
S3_IN_PODS = ("10.96.0.10", 9000)


@pytest.mark.timeout(900)  # two nodes, a bucket, every pod downloading: slower than the PVC loop
def test_the_loop_on_an_s3_store(
    control_plane: ControlPlane,
    crds: list[str],
    namespace: str,
    tmp_path: Path,
    objectstore: ObjectStore,
) -> None:
    """The same loop with the Model's store in a bucket: no pod mounts a claim, the two
    predictor replicas run on two nodes, and the drift check reads its logs from S3."""
    relay = f"{S3_IN_PODS[0]}:{S3_IN_PODS[1]}={objectstore.port}"
    nodes = tuple(("--node-name", f"s3-node-{i}", "--relay", relay) for i in (1, 2))
    settings = {
        "MLKUBE_S3_ENDPOINT": f"http://{S3_IN_PODS[0]}:{S3_IN_PODS[1]}",
        "MLKUBE_S3_ADDRESSING_STYLE": "path",
        "MLKUBE_S3_REGION": "us-east-1",
    }
    s3 = S3Store(
        bucket=objectstore.bucket,
        access_key=objectstore.access_key,
        secret_key=objectstore.secret_key,
        objects=lambda prefix: _keys(objectstore, prefix),
    )

    def leg(loop: Loop) -> tuple[Summary, set[str], list[dict[str, Any]]]:
        summary = loop.run()
        spread = {p["spec"]["nodeName"] for p in loop.ready_predictors()}
        pods = loop.kube.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
        return summary, spread, pods

    summary, spread, pods = with_cluster(
        control_plane, namespace, tmp_path, leg, nodes=nodes, settings=settings, s3=s3
    )
    print(f"the whole loop on s3://{objectstore.bucket} took {summary.total_seconds:.1f}s")
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
    paginator = store.client().get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=store.bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
