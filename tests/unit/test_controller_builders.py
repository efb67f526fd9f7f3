"""Pure builders of the operator's children: names, ownership, restricted pods, fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlkube.api.resources import training_job_resource
from mlkube.api.status import Trigger
from mlkube.controller.builders import (
    build_drift_cronjob,
    build_drift_rbac,
    build_predictor_deployment,
    build_predictor_hpa,
    build_predictor_pdb,
    build_predictor_service,
    build_trainer_job,
    predictor_endpoint,
)
from mlkube.controller.builders.common import SPEC_HASH, with_spec_hash
from mlkube.controller.settings import OperatorSettings

SETTINGS = OperatorSettings(runtime_image="registry.local/mlkube-runtime:1")


def model(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "task": "classification",
        "training": {
            "estimator": {
                "class": "sklearn.tree.DecisionTreeClassifier",
                "params": {"max_depth": 3},
            },
            "data": {"uri": "pvc://datasets/churn/train.csv", "target": "churned"},
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
        },
    }
    base.update(spec)
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": "churn", "namespace": "team", "uid": "uid-model"},
        "spec": base,
    }


def training_job(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "churn-v3", "namespace": "team", "uid": "uid-tj"},
        "spec": {"modelRef": {"name": "churn"}, "trigger": "drift", "reason": "psi", **spec},
    }


def assert_restricted(pod_spec: dict[str, Any]) -> None:
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod_spec["securityContext"]["runAsUser"], int)
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod_spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
        assert container["resources"]["requests"] or container["resources"]["limits"]
    assert any(v.get("emptyDir") is not None for v in pod_spec["volumes"])


def test_training_job_resource_is_owned_by_the_model() -> None:
    tj = training_job_resource(model(), "churn-v1", Trigger.INITIAL, "first")
    assert tj["metadata"]["name"] == "churn-v1"
    assert tj["metadata"]["ownerReferences"][0]["uid"] == "uid-model"
    assert tj["metadata"]["labels"]["mlkube.io/trigger"] == "initial"
    assert tj["spec"] == {"modelRef": {"name": "churn"}, "trigger": "initial", "reason": "first"}


def test_trainer_job_runs_mlkube_train_with_the_effective_spec() -> None:
    tj = training_job(overrides={"estimator": {"params": {"max_depth": 5}}})
    job = build_trainer_job(model(storage={"uri": "pvc://models/prod"}), tj, 3, SETTINGS)
    assert job["metadata"]["name"] == "churn-v3-train"
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "TrainingJob",
        "name": "churn-v3",
        "uid": "uid-tj",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 600)
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.job_ttl_seconds
    assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    pod = spec["template"]["spec"]
    assert_restricted(pod)
    assert pod["restartPolicy"] == "Never"
    assert pod["tolerations"][0]["key"] == "gpu"
    container = pod["containers"][0]
    assert container["image"] == "registry.local/mlkube-runtime:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1, "cpu": "2", "memory": "2Gi"}
    args = container["args"]
    assert args[0] == "train"
    flags = dict(zip(args[1::2], args[2::2], strict=False))
    assert flags["--store"] == "/mnt/store/prod"
    assert flags["--store-uri"] == "pvc://models/prod"
    assert (flags["--version"], flags["--trigger"], flags["--training-job"]) == (
        "3",
        "drift",
        "churn-v3",
    )
    manifest = json.loads(flags["--model-json"])
    assert manifest["metadata"] == {"name": "churn", "namespace": "team"}
    assert manifest["spec"]["training"]["estimator"]["params"] == {"max_depth": 5}
    assert manifest["spec"]["training"]["estimator"]["class"].endswith("DecisionTreeClassifier")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mnt/pvc/datasets"]["readOnly"] is True
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
    }
    assert claims["store"] == "models" and claims["data"] == "datasets"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    labels = spec["template"]["metadata"]["labels"]
    assert labels["mlkube.io/training-job"] == "churn-v3"
    assert labels["mlkube.io/version"] == "3"


def test_trainer_job_uses_operator_defaults() -> None:
    plain = model()
    del plain["spec"]["training"]["backoffLimit"]
    del plain["spec"]["training"]["resources"]
    job = build_trainer_job(plain, training_job(), 1, SETTINGS)
    assert job["spec"]["backoffLimit"] == SETTINGS.default_backoff_limit
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == SETTINGS.trainer_resources
    flags = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert flags[flags.index("--store") + 1] == "/mnt/store"


def test_predictor_deployment_serves_one_version() -> None:
    spec = {
        "serving": {
            "workers": 2,
            "inferenceLogging": {"sampleRate": 0.5},
            "nodeSelector": {"pool": "serve"},
        }
    }
    deployment = build_predictor_deployment(model(**spec), 4, "ab" * 32, SETTINGS)
    assert deployment["metadata"]["name"] == "churn-predictor"
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "mlkube.io/model": "churn",
        "mlkube.io/component": "predictor",
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["mlkube.io/version"] == "4"
    pod = template["spec"]
    assert_restricted(pod)
    assert pod["nodeSelector"] == {"pool": "serve"}
    container = pod["containers"][0]
    args = container["args"]
    assert args[:3] == ["serve", "--model-dir", "/mnt/store/team/churn/v4"]
    assert args[args.index("--sha256") + 1] == "ab" * 32
    assert args[args.index("--workers") + 1] == "2"
    assert args[args.index("--sample-rate") + 1] == "0.5"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/models/churn/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "256Mi"},
        "limits": {"cpu": "2000m", "memory": "1Gi"},
    }
    other = build_predictor_deployment(model(**spec), 5, "cd" * 32, SETTINGS)
    assert other["spec"]["selector"] == deployment["spec"]["selector"]
    assert other["spec"]["template"] != deployment["spec"]["template"]


def test_predictor_workers_and_cpu_agree() -> None:
    """One worker keeps at most one core busy: the defaults give one worker per CPU-limit
    core, and workers without a CPU setting get the per-worker default times workers."""

    def sized(serving: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        container = build_predictor_deployment(model(serving=serving), 1, "", SETTINGS)
        container = container["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        return args[args.index("--workers") + 1], container["resources"]

    workers, resources = sized({})
    assert (workers, resources) == ("1", SETTINGS.predictor_resources)
    assert resources["limits"]["cpu"] == "1"
    workers, resources = sized({"resources": {"limits": {"cpu": "4"}}})
    assert workers == "4"
    workers, resources = sized({"resources": {"requests": {"cpu": "2500m"}}})
    assert (workers, resources["limits"]["cpu"]) == ("2", "2500m")
    workers, resources = sized({"workers": 3, "resources": {"limits": {"cpu": "1"}}})
    assert (workers, resources["limits"]["cpu"]) == ("3", "1")  # the user's choice stands


def test_service_hpa_and_endpoint() -> None:
    m = model(
        serving={
            "autoscaling": {
                "minReplicas": 2,
                "maxReplicas": 8,
                "targetCPUUtilizationPercentage": 55,
            }
        }
    )
    service = build_predictor_service(m)
    assert service["spec"]["selector"] == {
        "mlkube.io/model": "churn",
        "mlkube.io/component": "predictor",
    }
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = build_predictor_hpa(m)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "churn-predictor"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 55
    assert predictor_endpoint(m) == "http://churn-predictor.team.svc.cluster.local"


@pytest.mark.parametrize(("min_replicas", "expected"), [(1, False), (3, True)])
def test_pdb_only_with_more_than_one_replica(min_replicas: int, expected: bool) -> None:
    m = model(serving={"autoscaling": {"minReplicas": min_replicas, "maxReplicas": 5}})
    pdb = build_predictor_pdb(m)
    assert (pdb is not None) is expected
    if pdb is not None:
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["metadata"]["ownerReferences"][0]["uid"] == "uid-model"


def monitor(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "churn-watch", "namespace": "team", "uid": "uid-mon"},
        "spec": {"modelRef": {"name": "churn"}, **spec},
    }


def test_drift_cronjob_runs_the_check_under_its_own_account() -> None:
    cronjob = build_drift_cronjob(
        monitor(schedule="0 * * * *", suspend=True),
        model(storage={"uri": "pvc://models/p"}),
        SETTINGS,
    )
    assert cronjob["metadata"]["name"] == "churn-watch-drift"
    assert cronjob["metadata"]["ownerReferences"][0]["uid"] == "uid-mon"
    assert (cronjob["spec"]["schedule"], cronjob["spec"]["suspend"]) == ("0 * * * *", True)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert_restricted(pod)
    assert pod["serviceAccountName"] == "churn-watch-drift"
    container = pod["containers"][0]
    assert container["args"] == ["drift-check", "--monitor", "team/churn-watch"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLKUBE_STORE_ROOT"] == "/mnt/store/p"


def test_drift_rbac_grants_exactly_what_the_checker_needs() -> None:
    account, role, binding = build_drift_rbac(monitor())
    assert [account["kind"], role["kind"], binding["kind"]] == [
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ]
    grants = {
        (r, v, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert grants == {
        ("monitors", "get", ("churn-watch",)),
        ("monitors/status", "patch", ("churn-watch",)),
        ("models", "get", ("churn",)),
        ("trainingjobs", "list", ()),
        ("trainingjobs", "create", ()),
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "churn-watch-drift", "namespace": "team"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_builders_are_deterministic_and_hash_changes_with_the_spec() -> None:
    one = with_spec_hash(build_predictor_hpa(model()))
    two = with_spec_hash(build_predictor_hpa(model()))
    other = with_spec_hash(build_predictor_hpa(model(serving={"autoscaling": {"maxReplicas": 9}})))
    assert one == two
    assert one["metadata"]["annotations"][SPEC_HASH] != other["metadata"]["annotations"][SPEC_HASH]
