"""End to end: the iris loop through real Jobs, Deployments and CronJobs whose pods run.

The operator runs as ``mlkube operator`` and the node agent runs the pods it creates
(trainer Jobs, the predictor Deployment, the drift CronJob's Job) as local processes with
their own IPs. The loop itself lives in ``demo.loop`` so ``make demo`` shows the same
thing; this test checks the outcome of every step and prints how long the loop took.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.canary import CanaryLeg
from demo.loop import Loop
from demo.processes import agent_and_operator
from harness.controlplane import ControlPlane
from nodeagent.kube import Kube


# The loop (about 2-4 minutes on a shared 2-core machine) and its canary leg (2-3 more).
@pytest.mark.timeout(900)
def test_train_serve_drift_retrain_reject_rollback(
    control_plane: ControlPlane, crds: list[str], namespace: str, tmp_path: Path
) -> None:
    kube = Kube(control_plane.kubeconfig)
    try:
        with agent_and_operator(control_plane.kubeconfig, namespace, tmp_path):
            loop = Loop(
                kube, control_plane.bin_dir / "kubectl", control_plane.kubeconfig, namespace,
                say=print,
            )  # fmt: skip
            summary = loop.run()
            answered = set(summary.answers)  # before the canary leg adds its own
            # ---- the canary leg (issue 14): its own steps, checked below ------------------
            canary = CanaryLeg(loop).run()
    finally:
        kube.close()

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
