"""Least privilege, proven: the operator runs under the manifests' ClusterRole only.

The module installs the rendered Namespace, ServiceAccount, ClusterRole and binding (and
the leader-election Role and binding in the operator's namespace), mints a token for the
ServiceAccount (TokenRequest, ``kubectl create token``) and starts ``mlkube operator``
with the rendered Deployment's command, args and env, outside a container, with a
kubeconfig holding nothing but that token (the downward-API namespace becomes the
Deployment's, as the kubelet would set it). It then drives every path that needs a
permission: train → promote → serve → Ready (pods created by the real Job and ReplicaSet
controllers, so Pod Security ``restricted`` admits every one of them), a failed training
(pod log tail), a PodDisruptionBudget created then deleted, a spec change rolled out
(patches), a canary behind a Gateway (its Deployment, Service and HTTPRoute, deleted
again), a Monitor with its CronJob, ServiceAccount, Role and RoleBinding, an invalid
spec (Event), and a restart after an upgrade changed children (server-side apply of
every unwatched kind).

The apiserver's audit log then lists what the operator called. A rule of the ClusterRole
or of the leader-election Role (its Lease is created, renewed, released on the restart and
taken again) that no call used, and that no Role the operator created delegates (the
apiserver lets it grant only what it holds), fails the test. The drift checker's Role is
exercised by the real ``mlkube drift-check --monitor`` with a token of the ServiceAccount
the operator made for it (and refused what it must not do). Every Model, TrainingJob and
Monitor seen along the way is judged by Argo CD's health.lua, Flux's CEL expressions and
kstatus, which must agree (a kstatus conformance check over real objects).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import MLKUBE, OperatorKit, kstatus, trainer_summary
from drift_data import store_version, synthetic_frame
from harness.controlplane import REPO, ControlPlane
from harness.gateway import install_httproute_crd
from harness.gitops import ARGO_TO_KSTATUS, argocd_health, flux_verdict, kstatus_verdict
from harness.ports import free_ports

OPERATOR_USER = "system:serviceaccount:mlkube-system:mlkube-operator"
SPEC_HASH = "mlkube.io/spec-hash"
DRIFT_FEATURES = ["n0", "n1", "n2", "n3", "c0", "c1"]


@dataclass
class Installed:
    plane: ControlPlane
    objects: list[dict[str, Any]]
    kubeconfig: Path

    def deployment(self) -> dict[str, Any]:
        return next(o for o in self.objects if o["kind"] == "Deployment")

    def leader_election_role(self) -> dict[str, Any]:
        return next(o for o in self.objects if o["kind"] == "Role")

    def cluster_role(self) -> dict[str, Any]:
        return next(
            o
            for o in self.objects
            if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "mlkube-operator"
        )


@dataclass
class RunningOperator:
    proc: subprocess.Popen[bytes]
    log: Path
    liveness: str
    argv: list[str] = field(default_factory=list)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def token_kubeconfig(plane: ControlPlane, token: str, path: Path) -> Path:
    config = yaml.safe_load(plane.kubeconfig.read_text())
    config["users"] = [{"name": "mlkube-operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "mlkube-operator"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def installed(
    control_plane: ControlPlane, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Installed:
    rendered = control_plane.kubectl("kustomize", str(REPO / "manifests" / "default")).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    wanted = {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    }
    for obj in objects:
        if obj["kind"] in wanted:
            control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(obj))
    token = control_plane.kubectl(
        "create", "token", "mlkube-operator", "-n", "mlkube-system", "--duration=2h"
    ).stdout.strip()
    path = tmp_path_factory.mktemp("rbac") / "operator.kubeconfig"
    return Installed(control_plane, objects, token_kubeconfig(control_plane, token, path))


def alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_operator(installed: Installed, log: Path) -> RunningOperator:
    """The rendered Deployment's container, run as a local process under the SA token."""
    container = installed.deployment()["spec"]["template"]["spec"]["containers"][0]
    health, metrics = free_ports(2)
    argv = [str(MLKUBE) if container["command"] == ["mlkube"] else container["command"][0]]
    argv += [
        f"--liveness=http://127.0.0.1:{health}/healthz" if arg.startswith("--liveness=") else arg
        for arg in container["args"]
    ]
    own_namespace = installed.deployment()["metadata"]["namespace"]
    env = {
        e["name"]: e["value"]
        if "value" in e
        else {"metadata.namespace": own_namespace}[e["valueFrom"]["fieldRef"]["fieldPath"]]
        for e in container["env"]
    }
    env |= {
        "PATH": os.environ["PATH"],
        "HOME": str(log.parent),
        "KUBECONFIG": str(installed.kubeconfig),
        "MLKUBE_METRICS_PORT": str(metrics),
        # one finished run kept per Model, so the flow sees an old run pruned
        "MLKUBE_MAX_TRAINING_JOBS": "1",
    }
    handle = log.open("ab")
    proc = subprocess.Popen(
        argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    handle.close()
    running = RunningOperator(proc, log, f"http://127.0.0.1:{health}/healthz", argv)
    deadline = time.monotonic() + 60
    while not alive(running.liveness):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"operator did not start:\n{running.text()[-3000:]}")
        time.sleep(0.3)
    return running


def restricted_namespace(plane: ControlPlane) -> str:
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input_text=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        ),
    )
    return name


MODEL: dict[str, Any] = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "iris"},
    "spec": {
        "task": "classification",
        "storage": {"uri": "pvc://models/rbac"},
        "training": {
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "data": {"uri": "sklearn://iris", "target": "target"},
            "validation": {"metric": "f1_macro"},
            "backoffLimit": 0,
        },
        "promotion": {"policy": "auto", "minScore": 0.5, "maxRegression": 0.01},
        "serving": {"autoscaling": {"minReplicas": 2, "maxReplicas": 3}},
    },
}
MONITOR: dict[str, Any] = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Monitor",
    "metadata": {"name": "iris"},
    "spec": {"modelRef": {"name": "iris"}, "schedule": "*/30 * * * *", "action": "retrain"},
}


def manual_training_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "manual", "reason": "rbac test"},
    }


def finish_training(kit: OperatorKit, tj: str, version: int, score: float) -> None:
    kit.wait(f"{tj} v{version}", lambda: kit.status("trainingjob", tj).get("version") == version)
    pod = kit.job_pod(f"{tj}-train")
    kit.finish_pod(
        pod["metadata"]["name"], 0, trainer_summary(version, score, namespace=kit.ns, model="iris")
    )
    kit.wait(f"{tj} Succeeded", lambda: kit.status("trainingjob", tj).get("phase") == "Succeeded")


def make_predictors_ready(kit: OperatorKit, version: int) -> None:
    selector = f"mlkube.io/model=iris,mlkube.io/component=predictor,mlkube.io/version={version}"
    for pod in kit.wait(f"predictor pods v{version}", lambda: kit.pods(selector)):
        kit.make_ready(pod["metadata"]["name"])


@dataclass
class Exercise:
    """What the module's flow left behind, for the tests to judge."""

    namespace: str
    operator_log: str
    started: str
    pods: list[dict[str, Any]]
    drift_role: dict[str, Any]
    snapshots: list[dict[str, Any]]


def _fail_a_run(kit: OperatorKit) -> None:
    # A failed manual training: the operator quotes the pod's log tail.
    # Owned by the Model, as the drift checker's runs are: the operator may prune it.
    broken = manual_training_job("broken")
    model = kit.get("model", "iris")
    assert model is not None
    broken["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Model",
            "name": "iris",
            "uid": model["metadata"]["uid"],
        }
    ]
    kit.apply(broken)
    kit.wait("broken gets v2", lambda: kit.status("trainingjob", "broken").get("version"))
    pod = kit.job_pod("broken-train")
    kit.finish_pod(pod["metadata"]["name"], 1, json.dumps({"error": "column missing"}))
    kit.wait("broken Failed", lambda: kit.status("trainingjob", "broken").get("phase") == "Failed")


def _start_a_monitor(kit: OperatorKit) -> dict[str, Any]:
    # A Monitor: CronJob, ServiceAccount, Role, RoleBinding; then a schedule change.
    kit.apply(MONITOR)
    kit.wait_get("cronjob", "iris-drift")
    role = kit.wait_get("role", "iris-drift")
    kit.wait_get("rolebinding", "iris-drift")
    kit.wait_get("serviceaccount", "iris-drift")
    # A run of the drift CronJob, as the CronJob controller would start it: its pod
    # must pass Pod Security admission too.
    kit.kubectl("create", "job", "iris-drift-now", "--from=cronjob/iris-drift")
    kit.job_pod("iris-drift-now")
    rescheduled = json.loads(json.dumps(MONITOR))
    rescheduled["spec"]["schedule"] = "*/15 * * * *"
    kit.apply(rescheduled)
    kit.wait(
        "CronJob rescheduled",
        lambda: (
            (kit.get("cronjob", "iris-drift") or {}).get("spec", {}).get("schedule")
            == "*/15 * * * *"
        ),
    )
    return role


def _apply_an_invalid_spec(kit: OperatorKit) -> None:
    # An invalid spec: Stalled and a Warning Event.
    bad = json.loads(json.dumps(MODEL))
    bad["metadata"]["name"] = "evil"
    bad["spec"]["training"]["estimator"]["class"] = "os.system"
    kit.apply(bad)
    kit.wait("evil Stalled", lambda: kstatus(kit.get("model", "evil")) == "Failed")
    kit.wait("an InvalidSpec event", lambda: kit.events_for("Model", "evil"))


def _run_a_gateway_canary(kit: OperatorKit, changed: dict[str, Any]) -> None:
    # A canary behind a Gateway: its Deployment, Service and the HTTPRoute; aborted, so the
    # route is patched back to stable and the canary's children deleted; then the Model
    # stops naming a Gateway and the route is deleted.
    install_httproute_crd(kit.plane)
    selector = "mlkube.io/model=iris,mlkube.io/component=predictor,mlkube.io/version=3"

    def serving_v3() -> bool:
        # Every v3 pod the ReplicaSet made so far is ready, and the Model says v3 serves.
        for pod in kit.pods(selector):
            ready = (pod.get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in ready):
                kit.make_ready(pod["metadata"]["name"])
        return kstatus(kit.get("model", "iris")) == "Current"

    kit.wait("v3 serves (Model Ready)", serving_v3, 90)
    canary = json.loads(json.dumps(changed))
    rollout = {"strategy": "Canary", "parentRefs": [{"name": "edge"}]}
    canary["spec"]["serving"]["rollout"] = rollout
    kit.apply(canary)
    kit.apply(manual_training_job("candidate"))
    finish_training(kit, "candidate", 4, 0.96)
    kit.wait_get("deployment", "iris-predictor-canary")
    kit.wait_get("service", "iris-predictor-canary")
    kit.wait_get("httproute", "iris-predictor")
    kit.kubectl("annotate", "--overwrite", "model", "iris", "mlkube.io/rollout-request=abort:4")
    kit.wait("canary Service deleted", lambda: kit.get("service", "iris-predictor-canary") is None)
    kit.wait("canary gone", lambda: kit.get("deployment", "iris-predictor-canary") is None)
    canary["spec"]["serving"]["rollout"] = {"strategy": "Canary"}
    kit.apply(canary)
    kit.wait("HTTPRoute deleted", lambda: kit.get("httproute", "iris-predictor") is None)


@pytest.fixture(scope="module")
def exercised(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exercise]:
    plane = installed.plane
    ns = restricted_namespace(plane)
    kit = OperatorKit(plane, ns)
    log = tmp_path_factory.mktemp("rbac-operator") / "operator.log"
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    operator = start_operator(installed, log)
    snapshots: list[dict[str, Any]] = []

    def snapshot() -> None:
        snapshots.extend(kit.list("models,trainingjobs,monitors"))

    try:
        # Train, promote, serve (Deployment, Service, HPA, PDB), Ready.
        kit.apply(MODEL)
        kit.wait("iris-v1", lambda: kit.status("trainingjob", "iris-v1").get("version"))
        snapshot()
        finish_training(kit, "iris-v1", 1, 0.9)
        snapshot()
        kit.wait_get("pdb", "iris-predictor")
        make_predictors_ready(kit, 1)
        kit.wait("Model Ready", lambda: kstatus(kit.get("model", "iris")) == "Current", 60)
        snapshot()

        _fail_a_run(kit)
        role = _start_a_monitor(kit)
        _apply_an_invalid_spec(kit)
        snapshot()

        # An upgrade changed children the operator does not watch: after a restart it
        # finds them differing from what it wants and re-applies them.
        operator.stop()
        unwatched = [
            ("service", "iris-predictor"),
            ("hpa", "iris-predictor"),
            ("pdb", "iris-predictor"),
            ("serviceaccount", "iris-drift"),
            ("role", "iris-drift"),
            ("rolebinding", "iris-drift"),
        ]
        for kind, name in unwatched:
            kit.kubectl("annotate", "--overwrite", kind, name, f"{SPEC_HASH}=stale")
        operator = start_operator(installed, log)
        for kind, name in unwatched:
            kit.wait(
                f"{kind} re-applied",
                lambda kind=kind, name=name: (
                    ((kit.get(kind, name) or {})["metadata"].get("annotations") or {}).get(
                        SPEC_HASH
                    )
                    != "stale"
                ),
            )

        # A better version: the Deployment rolls to it.
        kit.apply(manual_training_job("better"))
        finish_training(kit, "better", 3, 0.95)
        kit.wait(
            "Deployment on v3",
            lambda: (
                "/v3"
                in " ".join(
                    (kit.get("deployment", "iris-predictor") or {})["spec"]["template"]["spec"][
                        "containers"
                    ][0]["args"]
                )
            ),
        )

        # v1 no longer serves: its run, made by the operator, is pruned (one kept per Model).
        kit.wait("iris-v1 pruned", lambda: kit.get("trainingjob", "iris-v1") is None)

        # One replica promised: the PDB goes, the HPA follows the new bounds.
        changed = json.loads(json.dumps(MODEL))
        changed["spec"]["serving"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 5}
        kit.apply(changed)
        kit.wait("PDB deleted", lambda: kit.get("pdb", "iris-predictor") is None)
        kit.wait(
            "HPA max 5",
            lambda: (
                (kit.get("hpa", "iris-predictor") or {}).get("spec", {}).get("maxReplicas") == 5
            ),
        )
        snapshot()
        _run_a_gateway_canary(kit, changed)
        snapshot()
        pods = kit.list("pods")
        yield Exercise(ns, operator.text(), started, pods, role, snapshots)
    finally:
        code = operator.stop()
        plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert code == 0, operator.text()[-3000:]


def audit_calls(plane: ControlPlane, user: str, since: str) -> list[dict[str, Any]]:
    """Audit events of ``user`` from ``since`` on (one per request: the final stage)."""
    events = []
    for line in plane.audit_log.read_text().splitlines():
        event = json.loads(line)
        if event["user"]["username"] != user or event["stage"] == "RequestReceived":
            continue
        if event["requestReceivedTimestamp"][:19] < since:
            continue
        events.append(event)
    return events


def permission(event: dict[str, Any]) -> tuple[str, str, str]:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "")
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    return (ref.get("apiGroup", ""), resource, event["verb"])


def expand(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def test_reconcile_flow_runs_under_the_cluster_role_alone(
    installed: Installed, exercised: Exercise
) -> None:
    calls = audit_calls(installed.plane, OPERATOR_USER, exercised.started)
    assert len(calls) > 50, "the operator's calls are not in the audit log"
    denied = sorted(
        {
            permission(e)
            for e in calls
            if (e.get("annotations") or {}).get("authorization.k8s.io/decision") != "allow"
        }
    )
    assert denied == [], f"the operator was refused: {denied}"
    # RBAC refusals read 'is forbidden: User "…" cannot …' (a namespace being deleted by
    # another test also answers 403, which is not a missing permission).
    assert 'is forbidden: User "' not in exercised.operator_log
    assert (
        installed.deployment()["spec"]["template"]["spec"]["serviceAccountName"]
        == (OPERATOR_USER.rsplit(":", 1)[1])
    )


def test_every_cluster_role_rule_is_used(installed: Installed, exercised: Exercise) -> None:
    granted = expand(installed.cluster_role()["rules"])
    granted |= expand(installed.leader_election_role()["rules"])
    used = {permission(e) for e in audit_calls(installed.plane, OPERATOR_USER, exercised.started)}
    delegated = expand(exercised.drift_role["rules"])
    # get where list is used reveals nothing more (the role file says why it is there).
    implied = {(g, r, "get") for g, r, v in used if v == "list"}
    unused = sorted(granted - used - delegated - implied)
    assert unused == [], f"the roles grant what the operator never used: {unused}"
    assert used - granted == set(), "the audit log shows calls the role does not grant"


def test_every_pod_the_operator_made_was_admitted_under_restricted(
    installed: Installed, exercised: Exercise
) -> None:
    labels = json.loads(
        installed.plane.kubectl("get", "namespace", exercised.namespace, "-o", "json").stdout
    )["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    components = {p["metadata"]["labels"].get("mlkube.io/component") for p in exercised.pods}
    assert {"trainer", "predictor", "drift"} <= components
    for pod in exercised.pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def write_drifted_log(store: Path, namespace: str, rows: int, at: datetime) -> None:
    frame = synthetic_frame(rows, seed=2, drifted=True)[DRIFT_FEATURES]
    directory = store / namespace / "iris" / "inference" / at.strftime("%Y-%m-%d/%H")
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "w1-0.jsonl").open("w") as out:
        for i, record in enumerate(frame.to_dict(orient="records")):
            ts = (at + timedelta(seconds=i % 600)).strftime("%Y-%m-%dT%H:%M:%SZ")
            row = {
                "ts": ts,
                "model": "iris",
                "version": 3,
                "request_id": str(i),
                "status": 200,
                "inputs": record,
                "output": 1.0,
            }
            out.write(json.dumps(row) + "\n")


def test_drift_checker_runs_under_the_role_the_operator_made(
    installed: Installed, exercised: Exercise, tmp_path: Path
) -> None:
    """The real ``mlkube drift-check --monitor`` with a token of the drift ServiceAccount."""
    plane, ns = installed.plane, exercised.namespace
    token = plane.kubectl("create", "token", "iris-drift", "-n", ns).stdout.strip()
    config = token_kubeconfig(plane, token, tmp_path / "drift.kubeconfig")
    store = tmp_path / "store"
    store_version(
        store,
        synthetic_frame(3_000, seed=1, drifted=False)[DRIFT_FEATURES],
        name="iris",
        namespace=ns,
        version=3,
    )
    now = datetime.now(UTC).replace(microsecond=0)
    write_drifted_log(store, ns, 1_200, now - timedelta(minutes=30))
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    env = {**os.environ, "KUBECONFIG": str(config), "MLKUBE_STORE_ROOT": str(store)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    check = subprocess.run(
        [
            str(MLKUBE),
            "drift-check",
            "--monitor",
            f"{ns}/iris",
            "--now",
            now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    monitor = json.loads(plane.kubectl("get", "monitor", "iris", "-n", ns, "-o", "json").stdout)
    assert monitor["status"]["verdict"] == "drift"
    created = monitor["status"]["lastTrainingJob"]
    job = json.loads(plane.kubectl("get", "trainingjob", created, "-n", ns, "-o", "json").stdout)
    assert job["spec"]["trigger"] == "drift"

    drift_user = f"system:serviceaccount:{ns}:iris-drift"
    calls = audit_calls(plane, drift_user, started)
    used = {permission(e) for e in calls}
    assert ("mlkube.io", "trainingjobs", "create") in used
    assert ("mlkube.io", "monitors/status", "patch") in used
    denied = [
        permission(e)
        for e in calls
        if (e.get("annotations") or {}).get("authorization.k8s.io/decision") != "allow"
    ]
    assert denied == []
    assert used == expand(exercised.drift_role["rules"])  # every verb granted is used

    def as_drift(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(plane.bin_dir / "kubectl"), f"--kubeconfig={config}", "-n", ns, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    for forbidden in (
        ("patch", "model", "iris", "--type=merge", "-p", '{"spec":{"serving":{"version":1}}}'),
        ("patch", "model", "iris", "--subresource=status", "--type=merge", "-p", "{}"),
        ("delete", "trainingjob", created),
        ("get", "pods"),
        ("get", "secrets"),
        ("get", "models", "-n", "default"),
    ):
        refused = as_drift(*forbidden)
        assert refused.returncode != 0 and "forbidden" in refused.stderr, forbidden


def test_argocd_flux_and_kstatus_agree_on_the_operators_objects(exercised: Exercise) -> None:
    """kstatus conformance over real objects: every snapshot judged three ways, one verdict."""
    seen: dict[str, set[str]] = {}
    for obj in exercised.snapshots:
        verdict = kstatus_verdict(obj)
        assert kstatus(obj) == verdict
        health = argocd_health(obj)
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        assert ARGO_TO_KSTATUS[health["status"]] == verdict, (label, health, obj.get("status"))
        assert flux_verdict(obj) == verdict, (label, obj.get("status"))
        assert health.get("message"), label
        seen.setdefault(obj["kind"], set()).add(verdict)
    assert seen["Model"] == {"InProgress", "Current", "Failed"}
    assert {"InProgress", "Current", "Failed"} <= seen["TrainingJob"]
    assert "Current" in seen["Monitor"]
