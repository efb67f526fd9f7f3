"""A merged edit of a Model on the real control plane: what Argo CD, Flux and kstatus see.

An edit of the estimator's params trains exactly one new version (trigger ``spec-change``),
five edits in two seconds train once, a label edit trains nothing, the Model reads
Progressing until the run is decided, and a rejected edit leaves the old version serving
while the Model reads Degraded. The test plays the kubelet, as the lifecycle tests do.
"""

from __future__ import annotations

import time

from test_operator_lifecycle import model, serve_ready, train

from conftest import OperatorKit, OperatorProcess, kstatus
from harness.gitops import argocd_health


def spec_runs(kit: OperatorKit) -> list[str]:
    return [
        t["metadata"]["name"]
        for t in kit.list("trainingjobs")
        if t["spec"]["trigger"] == "spec-change"
    ]


def with_max_iter(value: int) -> dict[str, object]:
    manifest = model()
    manifest["spec"]["training"]["estimator"]["params"] = {"max_iter": value}
    return manifest


def test_edits_train_once_cosmetic_edits_never_and_a_rejection_reads_degraded(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    kit.apply(model())
    train(kit, "iris-v1", 0.9, 1)
    serve_ready(kit, 1)
    kit.wait("Model Current", lambda: kstatus(kit.get("model", "iris")) == "Current", 30)

    kit.kubectl("label", "model", "iris", "team=blue")
    time.sleep(4)  # longer than the settling time: a run would exist by now
    assert spec_runs(kit) == []
    assert kstatus(kit.get("model", "iris")) == "Current"

    for value in (300, 400, 500, 600, 700):
        kit.apply(with_max_iter(value))
        time.sleep(0.3)
    generation = kit.get("model", "iris")["metadata"]["generation"]  # type: ignore[index]
    runs = kit.wait("one spec-change run", lambda: spec_runs(kit), timeout=30)
    assert runs == [f"iris-g{generation}"]
    assert kstatus(kit.get("model", "iris")) == "InProgress"
    assert argocd_health(kit.get("model", "iris"))["status"] == "Progressing"

    train(kit, runs[0], 0.3, 2)  # below minScore 0.5: rejected
    status = kit.wait(
        "the edit rejected",
        lambda: kstatus(kit.get("model", "iris")) == "Failed" and kit.status("model", "iris"),
    )
    assert status["servingVersion"] == 1
    assert status["versions"][-1]["generation"] == generation
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "SpecRejected" and "v1 keeps serving" in stalled["message"]
    assert argocd_health(kit.get("model", "iris"))["status"] == "Degraded"
    assert kit.wait(
        "a SpecRejected Event",
        lambda: [e for e in kit.events_for("Model", "iris") if e["reason"] == "SpecRejected"],
    )
    time.sleep(3)
    assert spec_runs(kit) == runs  # still exactly one run for the five edits
