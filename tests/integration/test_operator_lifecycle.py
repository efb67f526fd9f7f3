"""The operator on the real control plane: train → version → predictor → Ready; promotion,
rejection and pinning; the failure path; invalid specs; kstatus; garbage collection.

Pods are made by the real Job and ReplicaSet controllers; the test plays the kubelet.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from typing import Any

from conftest import OperatorKit, OperatorProcess, kstatus, trainer_summary

MODEL: dict[str, Any] = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "iris"},
    "spec": {
        "task": "classification",
        "storage": {"uri": "pvc://models/team-a"},
        "training": {
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 200},
            },
            "data": {"uri": "sklearn://iris", "target": "target"},
            "validation": {"metric": "f1_macro"},
            "backoffLimit": 0,
            "nodeSelector": {"pool": "cpu"},
        },
        "promotion": {"policy": "auto", "minScore": 0.5, "maxRegression": 0.01},
        "serving": {
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "targetCPUUtilizationPercentage": 60,
            }
        },
    },
}


def model(**spec_changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(MODEL)
    manifest["spec"].update(spec_changes)
    return manifest


def train(kit: OperatorKit, tj: str, score: float, version: int) -> None:
    """Waits for the TrainingJob's Job and pod, then completes the pod with a summary."""
    kit.wait(
        f"{tj} to get version {version}",
        lambda: kit.status("trainingjob", tj).get("version") == version,
    )
    pod = kit.job_pod(f"{tj}-train")
    kit.finish_pod(
        pod["metadata"]["name"], 0, trainer_summary(version, score, namespace=kit.ns, model="iris")
    )
    kit.wait(
        f"{tj} to succeed",
        lambda: kit.status("trainingjob", tj).get("phase") in ("Succeeded", "Rejected"),
    )


def serve_ready(kit: OperatorKit, version: int) -> None:
    """Makes the predictor pods of ``version`` ready, as a kubelet would."""
    selector = f"mlkube.io/model=iris,mlkube.io/component=predictor,mlkube.io/version={version}"
    pods = kit.wait(f"predictor pods of v{version}", lambda: kit.pods(selector))
    for pod in pods:
        kit.make_ready(pod["metadata"]["name"])


def user_training_job(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"modelRef": {"name": "iris"}, "trigger": "manual", "reason": "test"},
    }


def assert_first_trainer_job(job: dict[str, Any]) -> None:
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["image"] == "mlkube/runtime:test"
    assert container["args"][:1] == ["train"]
    args = dict(zip(container["args"][1::2], container["args"][2::2], strict=False))
    assert args["--store"] == "/mnt/store/team-a"
    assert args["--version"] == "1"
    assert args["--trigger"] == "initial"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["nodeSelector"] == {"pool": "cpu"}
    assert pod_spec["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models"
    assert job["spec"]["backoffLimit"] == 0


def assert_predictor_children(kit: OperatorKit) -> None:
    deployment = kit.wait_get("deployment", "iris-predictor")
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "/mnt/store/team-a/" + kit.ns + "/iris/v1" in server["args"]
    assert server["args"][server["args"].index("--sha256") + 1] == f"{1:064x}"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/models/iris/ready"
    service = kit.wait_get("service", "iris-predictor")
    assert service["spec"]["ports"][0]["port"] == 80
    hpa = kit.wait_get("hpa", "iris-predictor")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert kit.get("pdb", "iris-predictor") is None


def test_model_trains_serves_and_is_ready_only_when_available(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    kit.apply(model())
    tj = kit.wait_get("trainingjob", "iris-v1", timeout=20)
    assert tj["spec"]["trigger"] == "initial"
    assert tj["metadata"]["ownerReferences"][0]["kind"] == "Model"
    assert_first_trainer_job(kit.wait_get("job", "iris-v1-train"))
    assert kstatus(kit.get("model", "iris")) == "InProgress"
    assert kstatus(kit.get("trainingjob", "iris-v1")) == "InProgress"

    train(kit, "iris-v1", 0.9, 1)
    status = kit.wait(
        "serving v1", lambda: (s := kit.status("model", "iris")).get("servingVersion") == 1 and s
    )
    assert status["versions"][0]["decision"] == "Promoted"
    assert_predictor_children(kit)

    ready = {c["type"]: c for c in kit.status("model", "iris")["conditions"]}
    assert ready["Ready"]["status"] == "False"
    assert kstatus(kit.get("model", "iris")) == "InProgress"
    serve_ready(kit, 1)
    kit.wait("Model Ready", lambda: kstatus(kit.get("model", "iris")) == "Current", timeout=30)
    final = kit.get("model", "iris")
    assert final is not None
    assert final["status"]["endpoint"].startswith("http://iris-predictor.")
    assert not any(k.startswith("kopf") for k in final["metadata"].get("annotations") or {})
    assert not final["metadata"].get("finalizers")
    assert kstatus(kit.get("trainingjob", "iris-v1")) == "Current"
    assert [e["reason"] for e in kit.events_for("Model", "iris")] == ["VersionPromoted"]

    with urllib.request.urlopen(operator.metrics, timeout=5) as response:
        exported = response.read().decode()
    assert f'mlkube_serving_version{{model_name="iris",namespace="{kit.ns}"}} 1.0' in exported
    assert 'mlkube_reconciles_total{kind="Model"}' in exported
    assert 'mlkube_trainings_total{outcome="Succeeded"}' in exported


def test_worse_version_rejected_better_promoted_pin_rolls_back(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    kit.apply(model(serving={"autoscaling": {"minReplicas": 2, "maxReplicas": 3}}))
    train(kit, "iris-v1", 0.90, 1)
    kit.wait_get("pdb", "iris-predictor")

    kit.apply(user_training_job("worse"))
    train(kit, "worse", 0.80, 2)
    status = kit.wait(
        "v2 decided", lambda: (s := kit.status("model", "iris")).get("latestVersion") == 2 and s
    )
    v2 = status["versions"][1]
    assert v2["decision"] == "Rejected"
    assert "regresses" in v2["reason"]
    assert status["servingVersion"] == 1
    kit.wait(
        "the run marked Rejected",
        lambda: kit.status("trainingjob", "worse").get("phase") == "Rejected",
    )
    assert "not promoted" in kit.status("trainingjob", "worse")["message"]
    assert kit.wait(
        "a rejection event",
        lambda: [e for e in kit.events_for("Model", "iris") if e["reason"] == "VersionRejected"],
    )

    kit.apply(user_training_job("better"))
    train(kit, "better", 0.95, 3)
    kit.wait("v3 serving", lambda: kit.status("model", "iris").get("servingVersion") == 3)
    deployment = kit.wait(
        "the Deployment to roll to v3",
        lambda: (
            (d := kit.get("deployment", "iris-predictor"))
            and d["spec"]["template"]["metadata"]["labels"]["mlkube.io/version"] == "3"
            and d
        ),
    )
    assert any(
        "/iris/v3" in a for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    )

    pinned = model(serving={"version": 1, "autoscaling": {"minReplicas": 2, "maxReplicas": 3}})
    kit.apply(pinned)
    kit.wait(
        "the pin to roll back to v1",
        lambda: (
            kit.get("deployment", "iris-predictor")["spec"]["template"]["metadata"]["labels"][
                "mlkube.io/version"
            ]
            == "1"
        ),
    )
    status = kit.status("model", "iris")
    assert status["servingVersion"] == 1
    assert [p["version"] for p in status["promotions"]] == [1, 3, 1]
    assert "pinned" in status["promotions"][-1]["reason"]

    kit.apply(model(serving={"version": 2}))
    kit.wait(
        "a pin to a rejected version is honoured",
        lambda: kit.status("model", "iris").get("servingVersion") == 2,
    )
    kit.apply(model(serving={"version": 9}))
    kit.wait("an impossible pin stalls", lambda: kstatus(kit.get("model", "iris")) == "Failed")
    assert kit.status("model", "iris")["servingVersion"] == 2

    def pin_events() -> list[dict[str, Any]]:
        return [e for e in kit.events_for("Model", "iris") if e["reason"] == "InvalidPin"]

    events = kit.wait("an InvalidPin Event", pin_events)
    assert events[0]["type"] == "Warning"
    assert "spec.serving.version 9 does not exist" in events[0]["message"]
    kit.apply(model(serving={"version": 9, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}))
    kit.wait("the new generation observed", lambda: kstatus(kit.get("model", "iris")) == "Failed")
    time.sleep(1)  # a second Event, were one posted per reconcile, would show by now
    assert len(pin_events()) == 1


def test_failed_training_reports_exit_code_log_tail_and_events(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    kit.apply(model())
    pod = kit.job_pod("iris-v1-train")
    kit.finish_pod(pod["metadata"]["name"], 1, '{"error": "data uri sklearn://iris: boom"}')
    status = kit.wait(
        "TrainingJob Failed",
        lambda: (s := kit.status("trainingjob", "iris-v1")).get("phase") == "Failed" and s,
        timeout=30,
    )
    message = status["message"]
    assert "exited with code 1" in message
    assert pod["metadata"]["name"] in message
    assert "boom" in message
    assert "log tail unavailable" in message or "log lines" in message
    assert "after 1 attempt" in message
    assert kstatus(kit.get("trainingjob", "iris-v1")) == "Failed"
    kit.wait("an Event on the TrainingJob", lambda: kit.events_for("TrainingJob", "iris-v1"))
    events = kit.wait("an Event on the Model", lambda: kit.events_for("Model", "iris"))
    assert events[0]["type"] == "Warning"
    assert "iris-v1" in events[0]["message"]
    kit.wait("Model Stalled", lambda: kstatus(kit.get("model", "iris")) == "Failed")
    versions = kit.status("model", "iris")["versions"]
    assert versions[0]["decision"] == "Failed"


def test_oom_killed_trainer_is_reported_as_oom_killed_with_its_limit(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    """The kubelet's OOMKilled becomes the TrainingJob's reason, naming the limit to raise."""
    tight = model()
    tight["spec"]["training"]["resources"] = {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "64Mi"},
    }
    kit.apply(tight)
    pod = kit.job_pod("iris-v1-train")
    kit.finish_pod(pod["metadata"]["name"], 137, "", reason="OOMKilled")
    status = kit.wait(
        "TrainingJob Failed",
        lambda: (s := kit.status("trainingjob", "iris-v1")).get("phase") == "Failed" and s,
        timeout=30,
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "OOMKilled"
    first_line = status["message"].splitlines()[0]
    assert "OOMKilled" in first_line and "(64Mi)" in first_line
    assert "spec.training.resources.limits.memory" in first_line
    events = kit.wait(
        "an Event on the TrainingJob", lambda: kit.events_for("TrainingJob", "iris-v1")
    )
    assert events[0]["reason"] == "OOMKilled" and events[0]["type"] == "Warning"


def test_invalid_estimator_is_reported_once_without_training(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    bad = model()
    bad["spec"]["training"]["estimator"] = {"class": "os.system"}
    kit.apply(bad)
    status = kit.wait(
        "InvalidSpec", lambda: (s := kit.status("model", "iris")).get("conditions") and s
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["reason"] == "InvalidSpec"
    assert "allow-list" in conditions["Ready"]["message"]
    assert kstatus(kit.get("model", "iris")) == "Failed"
    events = kit.wait("an InvalidSpec Event", lambda: kit.events_for("Model", "iris"))
    assert events[0]["reason"] == "InvalidSpec"
    assert kit.list("trainingjobs") == []
    kit.apply(model())
    kit.wait_get("trainingjob", "iris-v1")
    assert len([e for e in kit.events_for("Model", "iris") if e["reason"] == "InvalidSpec"]) == 1


def test_monitor_gets_cronjob_and_least_rbac(operator: OperatorProcess, kit: OperatorKit) -> None:
    kit.apply(
        {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "Monitor",
            "metadata": {"name": "iris"},
            "spec": {"modelRef": {"name": "iris"}, "schedule": "*/10 * * * *"},
        }
    )
    kit.wait("Monitor waits for its Model", lambda: kstatus(kit.get("monitor", "iris")) == "Failed")
    kit.apply(model())
    cronjob = kit.wait_get("cronjob", "iris-drift")
    assert cronjob["spec"]["schedule"] == "*/10 * * * *"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod_spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "iris-drift"
    assert pod_spec["containers"][0]["args"] == ["drift-check", "--monitor", f"{kit.ns}/iris"]
    kit.wait("Monitor Current", lambda: kstatus(kit.get("monitor", "iris")) == "Current")
    for kind in ("serviceaccount", "role", "rolebinding"):
        kit.wait_get(kind, "iris-drift")
    who = f"--as=system:serviceaccount:{kit.ns}:iris-drift"

    def can(verb: str, resource: str, *extra: str) -> bool:
        result = kit.kubectl("auth", "can-i", verb, resource, who, *extra, check=False)
        return result.stdout.strip() == "yes"

    assert can("create", "trainingjobs.mlkube.io")
    assert can("patch", "monitors.mlkube.io/iris", "--subresource=status")
    assert not can("patch", "monitors.mlkube.io/other", "--subresource=status")
    assert not can("patch", "monitors.mlkube.io/iris")
    assert can("get", "models.mlkube.io/iris")
    assert not can("get", "models.mlkube.io/other")
    assert not can("delete", "models.mlkube.io/iris")
    assert not can("create", "pods")
    kit.kubectl("create", "job", "manual-check", "--from=cronjob/iris-drift")
    pod = kit.job_pod("manual-check")
    assert pod["spec"]["serviceAccountName"] == "iris-drift"


def test_deleting_a_model_collects_every_child(operator: OperatorProcess, kit: OperatorKit) -> None:
    kit.apply(model(serving={"autoscaling": {"minReplicas": 2, "maxReplicas": 3}}))
    train(kit, "iris-v1", 0.9, 1)
    for kind in ("deployment", "service", "hpa", "pdb"):
        kit.wait_get(kind, "iris-predictor")
    kit.kubectl("delete", "model", "iris", "--wait=false")
    for kind, name in (
        ("trainingjob", "iris-v1"),
        ("job", "iris-v1-train"),
        ("deployment", "iris-predictor"),
        ("service", "iris-predictor"),
        ("hpa", "iris-predictor"),
        ("pdb", "iris-predictor"),
    ):
        kit.wait(
            f"{kind}/{name} to be collected",
            lambda k=kind, n=name: kit.get(k, n) is None,
            timeout=60,
        )


def test_schedule_fires_one_named_training_per_firing(
    operator: OperatorProcess, kit: OperatorKit
) -> None:
    scheduled = model()
    scheduled["spec"]["training"]["schedule"] = "*/5 * * * *"
    kit.apply(scheduled)
    train(kit, "iris-v1", 0.9, 1)
    # As if the operator had been down since the last firing: the next reconcile catches up.
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    kit.kubectl(
        "patch",
        "model",
        "iris",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"lastScheduledTraining": past}}),
    )
    tj = kit.wait(
        "a scheduled TrainingJob",
        lambda: next(
            (t for t in kit.list("trainingjobs") if t["spec"]["trigger"] == "schedule"), None
        ),
    )
    assert tj["metadata"]["name"].startswith("iris-s")
    status = kit.wait(
        "lastScheduledTraining moves on",
        lambda: (s := kit.status("model", "iris")).get("lastScheduledTraining", past) > past and s,
    )
    assert status["lastScheduledTraining"].endswith(("0:00Z", "5:00Z"))
    train(kit, tj["metadata"]["name"], 0.95, 2)
    assert len([t for t in kit.list("trainingjobs") if t["spec"]["trigger"] == "schedule"]) == 1
