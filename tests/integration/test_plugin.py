"""``kubectl mlkube`` against the real apiserver, through kubectl's plugin discovery.

No operator runs here: each test creates Models and Monitors and writes their status
through the status subresource, as the operator and the drift checker would, then runs
the installed ``kubectl-mlkube`` console script (and once ``kubectl mlkube`` itself, found
on PATH) and checks what it prints and what it changed: the manual TrainingJob it
creates, the spec.serving.version pin of promote and rollback, the errors it refuses
with, kubeconfig context/namespace resolution, and a view-only user's forbidden write.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.controlplane import REPO, ControlPlane

PLUGIN = Path(sys.executable).parent / "kubectl-mlkube"
T = "2026-01-01T10:00:00Z"


def cond(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": T,
        "observedGeneration": 1,
    }


def version(number: int, decision: str, score: float, reason: str, **extra: Any) -> dict[str, Any]:
    entry = {
        "version": number,
        "trainingJob": f"iris-v{number}",
        "trigger": "initial" if number == 1 else "drift",
        "metric": "f1_macro",
        "score": score,
        "metrics": {"accuracy": score + 0.01, "f1_macro": score},
        "trainedAt": f"2026-01-0{number}T10:00:00Z",
        "decision": decision,
        "promoted": decision == "Promoted",
        "reason": reason,
        "uri": f"pvc://mlkube-models/ml/iris/v{number}",
        "sha256": f"{number:064x}",
    }
    entry.update(extra)
    return entry


MODEL_STATUS = {
    "observedGeneration": 1,
    "phase": "Ready",
    "latestVersion": 3,
    "servingVersion": 3,
    "servingScore": 0.9611,
    "conditions": [cond("Ready", "True", "Available", "Serving version 3")],
    "versions": [
        version(1, "Promoted", 0.93, "first version"),
        version(2, "Rejected", 0.71, "score 0.71 below minScore 0.85"),
        version(3, "Promoted", 0.9611, "score 0.9611 >= 0.93 - 0.02"),
        {"version": 4, "trainingJob": "iris-v4", "decision": "Failed", "reason": "pod failed"},
    ],
    "promotions": [
        {"version": 1, "time": "2026-01-01T10:05:00Z", "reason": "first version"},
        {"version": 3, "previous": 1, "time": "2026-01-03T10:05:00Z", "reason": "gate passed"},
    ],
}
MONITOR_STATUS = {
    "observedGeneration": 1,
    "cronJobName": "iris-drift",
    "lastCheckTime": "2026-01-04T08:30:00Z",
    "checkedVersion": 3,
    "verdict": "drift",
    "samples": 1200,
    "datasetDrift": True,
    "driftShare": 0.75,
    "features": {
        "petal_length_cm": {"method": "psi", "score": 0.61, "threshold": 0.2, "drifted": True},
        "sepal_width_cm": {"method": "psi", "score": 0.05, "threshold": 0.2, "drifted": False},
        "petal_width_cm": {"method": "psi", "score": 0.44, "threshold": 0.2, "drifted": True},
    },
    "lastReport": "pvc://mlkube-models/ml/iris/drift/2026-01-04T08-30-00Z.json",
    "lastTrainingJob": "iris-drift-20260104t0830",
    "lastRetrainTime": "2026-01-04T08:30:05Z",
    "conditions": [cond("Ready", "True", "Scheduled"), cond("Drifted", "True", "DriftDetected")],
}


def apply(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(obj))


def write_status(plane: ControlPlane, namespace: str, kind: str, name: str, status: Any) -> None:
    plane.kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


@pytest.fixture
def iris(control_plane: ControlPlane, crds: list[str], namespace: str) -> str:
    """Model iris with three versions (3 serving, rolled forward from 1) and a drifted Monitor."""
    model, monitor = yaml.safe_load_all((REPO / "manifests" / "examples" / "iris.yaml").read_text())
    apply(control_plane, namespace, model)
    apply(control_plane, namespace, monitor)
    write_status(control_plane, namespace, "model", "iris", MODEL_STATUS)
    write_status(control_plane, namespace, "monitor", "iris", MONITOR_STATUS)
    return namespace


def plugin(
    plane: ControlPlane, *args: str, kubeconfig: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(PLUGIN), f"--kubeconfig={kubeconfig or plane.kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def get(plane: ControlPlane, namespace: str, *what: str) -> Any:
    return json.loads(plane.kubectl("get", *what, "-n", namespace, "-o", "json").stdout)


def test_status_lists_models_with_serving_score_ready_and_drift(
    control_plane: ControlPlane, iris: str
) -> None:
    out = plugin(control_plane, "-n", iris, "status").stdout.splitlines()
    assert out[0].split() == [
        "MODEL",
        "SERVING",
        "LATEST",
        "SCORE",
        "READY",
        "REASON",
        "LAST",
        "DRIFT",
    ]
    assert out[1].split()[:6] == ["iris", "3", "3", "0.9611", "True", "Available"]
    assert "drift (75%) at 2026-01-04T08:30:00Z" in out[1]
    everywhere = plugin(control_plane, "status", "-A").stdout
    assert any(line.startswith(iris) and " iris " in line for line in everywhere.splitlines())


def test_status_through_kubectl_plugin_discovery(control_plane: ControlPlane, iris: str) -> None:
    env = {**os.environ, "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ['PATH']}"}
    kubectl = control_plane.bin_dir / "kubectl"
    listed = subprocess.run(
        [str(kubectl), "plugin", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert str(PLUGIN) in listed.stdout
    result = subprocess.run(
        [str(kubectl), "mlkube", f"--kubeconfig={control_plane.kubeconfig}", "-n", iris, "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert result.stdout.splitlines()[1].startswith("iris")


def test_versions_shows_history_metrics_reasons_and_promotions(
    control_plane: ControlPlane, iris: str
) -> None:
    out = plugin(control_plane, "-n", iris, "versions", "iris").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:5]}
    assert set(rows) == {"1", "2", "3*", "4"}
    assert "Rejected" in rows["2"] and "score 0.71 below minScore 0.85" in rows["2"]
    assert "accuracy=0.9711 f1_macro=0.9611" in rows["3*"]
    assert "Failed" in rows["4"] and "pod failed" in rows["4"]
    assert "Promotions:" in out
    assert "gate passed" in out.split("Promotions:")[1]


def test_train_creates_a_manual_training_job_owned_by_the_model(
    control_plane: ControlPlane, iris: str
) -> None:
    out = plugin(control_plane, "-n", iris, "train", "iris", "--reason", "new labels").stdout
    assert out.startswith("trainingjob.mlkube.io/iris-manual-")
    jobs = get(control_plane, iris, "trainingjobs")["items"]
    assert len(jobs) == 1
    (job,) = jobs
    model = get(control_plane, iris, "model", "iris")
    assert job["spec"] == {
        "modelRef": {"name": "iris"},
        "trigger": "manual",
        "reason": "new labels",
    }
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Model",
        "iris",
        model["metadata"]["uid"],
    )
    assert job["metadata"]["labels"]["mlkube.io/trigger"] == "manual"


def test_promote_pins_a_trained_version_and_refuses_others(
    control_plane: ControlPlane, iris: str
) -> None:
    out = plugin(control_plane, "-n", iris, "promote", "iris", "2").stdout
    assert "pinned to version 2" in out
    assert get(control_plane, iris, "model", "iris")["spec"]["serving"]["version"] == 2
    failed = plugin(control_plane, "-n", iris, "promote", "iris", "4", check=False)
    assert failed.returncode == 1
    assert failed.stderr.strip() == "error: version 4 has no trained artifact to serve"
    missing = plugin(control_plane, "-n", iris, "promote", "iris", "9", check=False)
    assert missing.returncode == 1
    assert "no version 9 (known: [1, 2, 3, 4])" in missing.stderr
    assert get(control_plane, iris, "model", "iris")["spec"]["serving"]["version"] == 2


def test_rollback_pins_the_previous_serving_version(control_plane: ControlPlane, iris: str) -> None:
    out = plugin(control_plane, "-n", iris, "rollback", "iris").stdout
    assert "rolled back from version 3 to 1" in out
    model = get(control_plane, iris, "model", "iris")
    assert model["spec"]["serving"]["version"] == 1
    assert model["spec"]["training"]["estimator"]["class"].startswith("sklearn.")

    write_status(control_plane, iris, "model", "iris", {"promotions": [], "servingVersion": 1})
    refused = plugin(control_plane, "-n", iris, "rollback", "iris", check=False)
    assert refused.returncode == 1
    assert "version 1 has no previous serving version" in refused.stderr


def test_drift_summarises_the_last_check(control_plane: ControlPlane, iris: str) -> None:
    out = plugin(control_plane, "-n", iris, "drift", "iris", "--top", "2").stdout
    assert "Verdict:        drift" in out
    assert "Drift share:    75.0%" in out
    assert "Samples:        1200" in out
    assert "iris-drift-20260104t0830 at 2026-01-04T08:30:05Z" in out
    features = [line.split()[0] for line in out.split("FEATURE")[1].splitlines()[1:]]
    assert features == ["petal_length_cm", "petal_width_cm"]


def test_context_and_namespace_come_from_the_kubeconfig(
    control_plane: ControlPlane, iris: str, tmp_path: Path
) -> None:
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    base = config["contexts"][0]["context"]
    config["contexts"].append({"name": "ml", "context": {**base, "namespace": iris}})
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    out = plugin(control_plane, "--context", "ml", "versions", "iris", kubeconfig=path).stdout
    assert "3*" in out
    default = plugin(control_plane, "versions", "iris", kubeconfig=path, check=False)
    assert default.returncode == 1
    assert default.stderr.strip() == "error: model iris not found in namespace default"
    wrong = plugin(control_plane, "--context", "nope", "status", kubeconfig=path, check=False)
    assert wrong.stderr.strip() == "error: context 'nope' not found in the kubeconfig"


def test_a_view_only_user_reads_but_cannot_train(
    control_plane: ControlPlane, iris: str, tmp_path: Path
) -> None:
    control_plane.kubectl("apply", "-f", str(REPO / "manifests" / "rbac" / "aggregate_roles.yaml"))
    control_plane.kubectl("create", "serviceaccount", "viewer", "-n", iris)
    control_plane.kubectl(
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        f"--serviceaccount={iris}:viewer",
        "-n",
        iris,
    )
    token = control_plane.kubectl("create", "token", "viewer", "-n", iris).stdout.strip()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "viewer", "user": {"token": token}}]
    config["contexts"][0]["context"] = {**config["contexts"][0]["context"], "user": "viewer"}
    path = tmp_path / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    assert "iris" in plugin(control_plane, "-n", iris, "status", kubeconfig=path).stdout
    refused = plugin(control_plane, "-n", iris, "train", "iris", kubeconfig=path, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: trainingjob in namespace {iris}: ")
    assert "forbidden" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
