"""Operator faults on the real control plane (issue 9).

- ``kill -9`` of ``mlkube operator`` at random points across N model lifecycles (create,
  train, promote, drift TrainingJob, retrain, delete; the test plays the kubelet): no
  duplicate Jobs or TrainingJobs, no lost or renumbered version, every object converges.
  N is ``MLKUBE_RELIABILITY_LIFECYCLES`` (3 by default; ``make reliability`` runs 50).
- kube-apiserver and, separately, etcd restarted under a running operator: its watches
  recover; the time from the restart until a new Model gets its TrainingJob is recorded.

Figures go to stdout (``-s``) and ``benchmarks/results/reliability-faults.json``.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from conftest import OperatorKit, OperatorProcess, trainer_summary
from harness.controlplane import ControlPlane
from reliability.figures import record
from reliability.workspace import bundled_model

LIFECYCLES = int(os.environ.get("MLKUBE_RELIABILITY_LIFECYCLES", "3"))


def _model(name: str) -> dict[str, Any]:
    return bundled_model(
        name,
        task="classification",
        estimator="sklearn.linear_model.LogisticRegression",
        data="sklearn://iris",
        training={"backoffLimit": 0},
        storage={"uri": "pvc://models"},
        promotion={"policy": "auto", "minScore": 0.1},
    )


class Chaos:
    """Runs the operator and kills it (SIGKILL) with probability ``p`` at each step."""

    def __init__(self, plane: ControlPlane, kit: OperatorKit, log: Path, p: float) -> None:
        self.plane, self.kit, self.log, self.p = plane, kit, log, p
        self.rng = random.Random(9)
        self.kills = 0
        self.operator = self._start()

    def _start(self) -> OperatorProcess:
        return OperatorProcess.start(self.plane, self.log, "--namespace", self.kit.ns)

    def step(self) -> None:
        if self.rng.random() < self.p:
            time.sleep(self.rng.random() * 0.5)
            self.operator.kill()
            self.kills += 1
            self.operator = self._start()

    def stop(self) -> None:
        self.operator.stop()


def _train(kit: OperatorKit, chaos: Chaos, model: str, tj: str, version: int) -> bool:
    try:
        kit.wait(
            f"{tj} v{version}",
            lambda: kit.status("trainingjob", tj).get("version") == version,
            timeout=60,
        )
        chaos.step()
        pod = kit.job_pod(f"{tj}-train")
        kit.finish_pod(
            pod["metadata"]["name"],
            0,
            trainer_summary(version, 0.8 + version / 100, namespace=kit.ns, model=model),
        )
        chaos.step()
        kit.wait(
            f"{model} serving v{version}",
            lambda: kit.status("model", model).get("servingVersion") == version,
            timeout=60,
        )
        return True
    except AssertionError:
        return False


def test_operator_killed_at_random_points_across_lifecycles(
    control_plane: ControlPlane, crds: list[str], kit: OperatorKit, tmp_path: Path
) -> None:
    chaos = Chaos(control_plane, kit, tmp_path / "operator.log", p=0.5)
    duplicates, lost, stuck = 0, 0, []
    started = time.monotonic()
    try:
        for i in range(LIFECYCLES):
            name = f"r{i}"
            kit.apply(_model(name))
            chaos.step()
            if not _train(kit, chaos, name, f"{name}-v1", 1):
                stuck.append(f"{name} v1")
                continue
            uid = (kit.get("model", name) or {})["metadata"]["uid"]
            owner = {
                "apiVersion": "mlkube.io/v1alpha1",
                "kind": "Model",
                "name": name,
                "uid": uid,
                "controller": False,
                "blockOwnerDeletion": False,
            }
            kit.apply(
                {
                    "apiVersion": "mlkube.io/v1alpha1",
                    "kind": "TrainingJob",
                    "metadata": {"name": f"{name}-drift", "ownerReferences": [owner]},
                    "spec": {
                        "modelRef": {"name": name},
                        "trigger": "drift",
                        "reason": "reliability",
                    },
                }
            )
            chaos.step()
            if not _train(kit, chaos, name, f"{name}-drift", 2):
                stuck.append(f"{name} v2")
            jobs = kit.list("jobs", f"mlkube.io/model={name}")
            tjs = kit.list("trainingjobs")
            mine = [t for t in tjs if t["spec"]["modelRef"]["name"] == name]
            duplicates += len(jobs) - len({j["metadata"]["name"] for j in jobs})
            duplicates += max(0, len(mine) - 2) + max(0, len(jobs) - 2)
            versions = [v["version"] for v in kit.status("model", name).get("versions", [])]
            if versions != [1, 2]:
                lost += 1
                stuck.append(f"{name} versions {versions}")
            kit.kubectl("delete", "model", name, "--wait=false")
            chaos.step()
        for i in range(LIFECYCLES):
            try:
                kit.wait(
                    f"r{i} collected",
                    lambda i=i: (
                        not [
                            t
                            for t in kit.list("trainingjobs")
                            if t["spec"]["modelRef"]["name"] == f"r{i}"
                        ]
                    ),
                    timeout=60,
                )
            except AssertionError:
                stuck.append(f"r{i} not collected")
    finally:
        chaos.stop()
    record(
        "operatorKills",
        {
            "lifecycles": LIFECYCLES,
            "kills": chaos.kills,
            "duplicates": duplicates,
            "lostVersions": lost,
            "neverConverged": len(stuck),
            "details": stuck,
            "seconds": round(time.monotonic() - started),
        },
    )
    assert (duplicates, lost, stuck) == (0, 0, [])


def test_watches_recover_after_apiserver_and_etcd_restarts(
    control_plane: ControlPlane, crds: list[str], kit: OperatorKit, tmp_path: Path
) -> None:
    operator = OperatorProcess.start(
        control_plane, tmp_path / "operator.log", "--namespace", kit.ns
    )
    recovery: dict[str, float] = {}
    try:
        for component in ("kube-apiserver", "etcd"):
            control_plane.restart(component)
            restarted = time.monotonic()
            name = f"after-{component.split('-')[-1]}"
            deadline = restarted + 120
            while kit.kubectl(
                "apply", "-f", "-", input_text=json.dumps(_model(name)), check=False
            ).returncode:
                assert time.monotonic() < deadline, f"API unavailable after {component}"
                time.sleep(0.5)
            kit.wait(
                f"{name}-v1 after {component} restart",
                lambda n=name: kit.get("trainingjob", f"{n}-v1"),
                timeout=120,
            )
            recovery[component] = round(time.monotonic() - restarted, 1)
        assert operator.proc.poll() is None, "the operator died with the control plane"
    finally:
        operator.stop()
    record("watchRecoverySeconds", recovery)
    assert all(seconds <= 30 for seconds in recovery.values()), recovery
