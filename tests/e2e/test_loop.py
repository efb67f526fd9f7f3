"""End to end: the iris loop through real Jobs, Deployments and CronJobs whose pods run.

The operator runs as ``mlkube operator`` and the node agent runs the pods it creates
(trainer Jobs, the predictor Deployment, the drift CronJob's Job) as local processes with
their own IPs. The loop itself lives in ``demo.loop`` so ``make demo`` shows the same
thing; this test checks the outcome of every step and prints how long the loop took.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from demo.loop import Loop
from demo.processes import start_node_agent, start_operator, stop
from harness.controlplane import ControlPlane
from nodeagent.kube import Kube

T = TypeVar("T")


def with_cluster(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, leg: Callable[[Loop], T]
) -> T:
    """Runs ``leg`` with a node agent and ``mlkube operator`` on the namespace; their log
    tails are printed when it fails."""
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
                return leg(loop)
            except AssertionError:
                print((tmp_path / "operator.log").read_text()[-6000:])
                print((tmp_path / "agent.log").read_text()[-4000:])
                raise
        finally:
            stop(operator)
    finally:
        stop(agent)
        kube.close()


def test_train_serve_drift_retrain_reject_rollback(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    summary = with_cluster(control_plane, namespace, tmp_path, Loop.run)

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
