"""Two operator replicas with leader election: at most one acts, and a standby takes over.

Two ``mlkube operator`` processes run against the control plane with
``MLKUBE_LEADER_ELECTION`` on and the Lease in the test's namespace. Exactly one holds the
Lease and reconciles (the other's reconcile counter stays at zero); Models get exactly
one TrainingJob and Job each. The holder is killed with SIGKILL: the standby takes the
Lease once it expires (the time is recorded, not asserted beyond a generous wait) and
finishes the work — trained versions recorded and served, a Model applied after the kill
trained too, still no duplicates. Finally the new holder is stopped with SIGTERM: it
releases the Lease, and a third replica takes over at once (recorded too).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import OperatorKit, OperatorProcess, trainer_summary
from harness.controlplane import ControlPlane
from reliability.figures import record
from reliability.workspace import bundled_model

LEASE = "mlkube-operator"
MODELS = ["a", "b", "c"]


def _model(name: str) -> dict[str, Any]:
    return bundled_model(name, training={"backoffLimit": 0})


def _leaders(operators: list[OperatorProcess]) -> list[OperatorProcess]:
    return [o for o in operators if o.proc.poll() is None and o.metric("mlkube_leader") == 1.0]


def _model_reconciles(operator: OperatorProcess) -> float:
    return operator.metric('mlkube_reconciles_total{kind="Model"}') or 0.0


def _train(kit: OperatorKit, model: str) -> None:
    tj = f"{model}-v1"
    kit.wait(f"{tj} v1", lambda: kit.status("trainingjob", tj).get("version") == 1, timeout=60)
    pod = kit.job_pod(f"{tj}-train")
    kit.finish_pod(pod["metadata"]["name"], 0, trainer_summary(1, 0.5, metric="r2", model=model))


def _assert_no_duplicates(kit: OperatorKit, models: list[str]) -> None:
    training_jobs = sorted(t["metadata"]["name"] for t in kit.list("trainingjobs"))
    assert training_jobs == sorted(f"{m}-v1" for m in models)
    jobs = sorted(j["metadata"]["name"] for j in kit.list("jobs"))
    assert jobs == sorted(f"{m}-v1-train" for m in models)


def test_two_replicas_one_acts_and_the_standby_takes_over(
    control_plane: ControlPlane, crds: list[str], kit: OperatorKit, tmp_path: Path
) -> None:
    env = {"MLKUBE_LEADER_ELECTION": "true", "MLKUBE_LEADER_ELECTION_NAMESPACE": kit.ns}

    def start(name: str) -> OperatorProcess:
        return OperatorProcess.start(
            control_plane, tmp_path / f"{name}.log", "--namespace", kit.ns, env=env
        )

    operators = [start("one"), start("two")]
    try:
        (leader,) = kit.wait("one leader", lambda: _leaders(operators), timeout=30)
        (standby,) = [o for o in operators if o is not leader]
        lease = kit.get("lease", LEASE)
        assert lease is not None
        holder = lease["spec"]["holderIdentity"]

        for name in MODELS:
            kit.apply(_model(name))
        kit.wait("a Job per Model", lambda: len(kit.list("jobs")) >= len(MODELS), timeout=30)
        _train(kit, MODELS[0])
        kit.wait(
            f"{MODELS[0]} serving v1",
            lambda: kit.status("model", MODELS[0]).get("servingVersion") == 1,
        )
        assert len(_leaders(operators)) == 1
        assert _model_reconciles(leader) > 0
        assert _model_reconciles(standby) == 0, "the standby reconciled"
        _assert_no_duplicates(kit, MODELS)

        killed = time.monotonic()
        leader.kill()
        kit.wait("the standby to lead", lambda: _leaders([standby]), timeout=60)
        takeover = round(time.monotonic() - killed, 1)
        lease = kit.get("lease", LEASE)
        assert lease is not None
        assert lease["spec"]["holderIdentity"] != holder
        assert lease["spec"]["leaseTransitions"] >= 1

        kit.apply(_model("late"))
        for name in [*MODELS[1:], "late"]:
            _train(kit, name)
        for name in [*MODELS, "late"]:
            kit.wait(
                f"{name} serving v1",
                lambda name=name: kit.status("model", name).get("servingVersion") == 1,
                timeout=60,
            )
            versions = kit.status("model", name)["versions"]
            assert [v["version"] for v in versions] == [1]
        converged = round(time.monotonic() - killed, 1)
        time.sleep(1)  # a duplicate, were one made, would show by now
        _assert_no_duplicates(kit, [*MODELS, "late"])

        third = start("three")
        operators.append(third)
        assert _model_reconciles(third) == 0
        stopped = time.monotonic()
        assert standby.stop() == 0, standby.tail()
        kit.wait("the third replica to lead", lambda: _leaders([third]), timeout=30)
        handover = round(time.monotonic() - stopped, 1)
        assert "released Lease" in standby.tail(200)
        record(
            "leaderElection",
            {
                "replicas": 2,
                "leaseSeconds": 15,
                "renewSeconds": 5,
                "takeoverAfterKillSeconds": takeover,
                "convergedAfterKillSeconds": converged,
                "handoverAfterSigtermSeconds": handover,
                "duplicateTrainingJobs": 0,
                "duplicateJobs": 0,
            },
        )
    finally:
        for operator in operators:
            operator.kill()
