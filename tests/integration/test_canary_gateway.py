"""A canary behind a Gateway API parent, on the real API server with the real operator.

With ``spec.serving.rollout.parentRefs`` the operator writes an HTTPRoute whose weights
are the canary share exactly, and a Service for the canary's pods only (the stable
Service does not select them). ``kubectl mlkube rollout abort`` ends the canary: the
route goes back to stable alone, the canary's Deployment and Service are deleted, an
Event says why, and the Model shows the rollout RolledBack while stable serves on.
(No kubelet here: the analysis of live pods is the end-to-end test's part.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import OperatorKit, OperatorProcess, trainer_summary
from harness.controlplane import ControlPlane
from harness.gateway import install_httproute_crd

PLUGIN = Path(sys.executable).with_name("kubectl-mlkube")


def model(rollout: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "gw"},
        "spec": {
            "task": "classification",
            "training": {
                "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                "data": {"uri": "sklearn://iris", "target": "target"},
                "validation": {"metric": "f1_macro"},
            },
            "promotion": {"policy": "auto", "minScore": 0.5},
            "serving": {"rollout": rollout},
        },
    }


def train(kit: OperatorKit, tj: str, version: int, score: float) -> None:
    kit.wait(f"{tj} v{version}", lambda: kit.status("trainingjob", tj).get("version") == version)
    pod = kit.job_pod(f"{tj}-train")
    summary = trainer_summary(version, score, namespace=kit.ns, model="gw")
    kit.finish_pod(pod["metadata"]["name"], 0, summary)


def weights(kit: OperatorKit) -> list[tuple[str, int]]:
    route = kit.get("httproute", "gw-predictor") or {}
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return [(b["name"], b["weight"]) for b in rules[0].get("backendRefs") or []]


def test_a_gateway_canary_gets_exact_weights_and_an_abort_returns_them_to_stable(
    control_plane: ControlPlane, operator: OperatorProcess, kit: OperatorKit
) -> None:
    install_httproute_crd(control_plane)
    rollout = {"strategy": "Canary", "canaryPercent": 10, "parentRefs": [{"name": "edge"}]}
    kit.apply(model(rollout))
    train(kit, "gw-v1", 1, 0.9)
    kit.wait("v1 serves", lambda: kit.status("model", "gw").get("servingVersion") == 1)
    stable = "mlkube.io/model=gw,mlkube.io/component=predictor"
    for pod in kit.wait("a predictor pod", lambda: kit.pods(stable)):
        kit.make_ready(pod["metadata"]["name"])
    kit.wait("route to stable", lambda: weights(kit) == [("gw-predictor", 100)])

    kit.apply(
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "gw-next"},
            "spec": {"modelRef": {"name": "gw"}, "trigger": "manual"},
        }
    )
    train(kit, "gw-next", 2, 0.95)
    kit.wait(
        "a 90/10 route",
        lambda: weights(kit) == [("gw-predictor", 90), ("gw-predictor-canary", 10)],
    )
    status = kit.status("model", "gw")
    assert status["servingVersion"] == 1
    assert status["rollout"]["phase"] == "Progressing" and status["rollout"]["mode"] == "httproute"
    service = kit.wait_get("service", "gw-predictor-canary")
    assert service["spec"]["selector"]["mlkube.io/component"] == "predictor-canary"
    canary = kit.wait_get("deployment", "gw-predictor-canary")
    assert canary["spec"]["template"]["metadata"]["labels"]["mlkube.io/version"] == "2"

    shown = plugin(control_plane, kit.ns, "rollout", "status", "gw")
    assert "canary v2 against v1: Progressing (httproute, 10% asked" in shown
    aborted = plugin(control_plane, kit.ns, "rollout", "abort", "gw")
    assert "rollback of canary v2" in aborted
    kit.wait("route back to stable", lambda: weights(kit) == [("gw-predictor", 100)])
    kit.wait("canary Service gone", lambda: kit.get("service", "gw-predictor-canary") is None)
    kit.wait("canary Deployment gone", lambda: kit.get("deployment", "gw-predictor-canary") is None)
    status = kit.status("model", "gw")
    assert status["servingVersion"] == 1 and status["rollout"]["phase"] == "RolledBack"
    assert status["promotions"][-1]["canary"]["phase"] == "RolledBack"
    assert [v["decision"] for v in status["versions"]] == ["Promoted", "Rejected"]
    events = [e["reason"] for e in kit.events_for("Model", "gw")]
    assert "CanaryProgressing" in events and "CanaryRolledBack" in events
    refused = run_plugin(control_plane, kit.ns, "rollout", "promote", "gw")
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: no canary is in progress (the last one: v2 RolledBack)"
    )

    kit.apply(model({"strategy": "Canary"}))  # no parent any more: the route is deleted
    kit.wait("route deleted", lambda: kit.get("httproute", "gw-predictor") is None)


def run_plugin(plane: ControlPlane, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), f"--kubeconfig={plane.kubeconfig}", "-n", namespace, *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def plugin(plane: ControlPlane, namespace: str, *args: str) -> str:
    result = run_plugin(plane, namespace, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout
