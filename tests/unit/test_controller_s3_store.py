"""An s3:// store in the operator: no pod mounts a claim, credentials are referenced (never
copied), the endpoint a Model names must be one the operator allows, and a trainer the
kubelet cannot start because of its Secret is reported by name."""

from __future__ import annotations

from typing import Any

import pytest
from test_controller_builders import SETTINGS, model, training_job

from mlkube.controller.builders import (
    build_drift_cronjob,
    build_predictor_deployment,
    build_trainer_job,
)
from mlkube.controller.settings import OperatorSettings, SettingsError
from mlkube.controller.spec import storage_of, storage_problem
from mlkube.controller.status import config_error

S3 = {"uri": "s3://models/team-a", "secretRef": {"name": "store-creds"}}
ENDPOINT = "http://127.0.0.1:9000"
S3_SETTINGS = SETTINGS.replace(s3_endpoint=ENDPOINT, s3_region="eu-west-1")


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    spec = manifest["spec"]
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _monitor() -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Monitor",
        "metadata": {"name": "churn-drift", "namespace": "team", "uid": "uid-mon"},
        "spec": {"modelRef": {"name": "churn"}, "schedule": "*/5 * * * *"},
    }


def _all_pods() -> list[dict[str, Any]]:
    m = model(storage=S3)
    return [
        _pod(build_trainer_job(m, training_job(), 3, S3_SETTINGS)),
        _pod(build_predictor_deployment(m, 3, "a" * 64, S3_SETTINGS)),
        _pod(build_drift_cronjob(_monitor(), m, S3_SETTINGS)),
    ]


def test_no_pod_of_an_s3_model_mounts_the_store_claim() -> None:
    for pod in _all_pods():
        claims = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        # The training data claim (pvc://datasets/...) is the user's, read-only.
        assert all(v["persistentVolumeClaim"]["claimName"] == "datasets" for v in claims), pod
        for container in pod["containers"]:
            assert all(
                not m["mountPath"].startswith("/mnt/store") for m in container["volumeMounts"]
            )


def test_credentials_come_from_the_secret_by_reference_only() -> None:
    for pod in _all_pods():
        env = _env(pod["containers"][0])
        assert env["AWS_ACCESS_KEY_ID"] == {
            "secretKeyRef": {"name": "store-creds", "key": "AWS_ACCESS_KEY_ID"}
        }
        assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "store-creds"
        assert env["AWS_SESSION_TOKEN"]["secretKeyRef"]["optional"] is True
        assert env["AWS_ENDPOINT_URL"] == ENDPOINT
        assert env["AWS_REGION"] == "eu-west-1"
        assert env["MLKUBE_S3_SECRET_NAME"] == "store-creds"


def test_pods_name_s3_uris_and_the_predictor_fetches_into_an_empty_dir() -> None:
    trainer, predictor, drift = _all_pods()
    args = trainer["containers"][0]["args"]
    assert args[args.index("--store") + 1] == "s3://models/team-a"
    assert "--model-root" not in args
    serve = predictor["containers"][0]["args"]
    assert serve[serve.index("--model-dir") + 1] == "s3://models/team-a/team/churn/v3"
    assert serve[serve.index("--log-dir") + 1] == "s3://models/team-a/team/churn/inference"
    cache = serve[serve.index("--model-cache") + 1]
    volume = next(
        m["name"] for m in predictor["containers"][0]["volumeMounts"] if m["mountPath"] == cache
    )
    assert "emptyDir" in next(v for v in predictor["volumes"] if v["name"] == volume)
    env = _env(drift["containers"][0])
    assert env["MLKUBE_STORE_ROOT"] == "s3://models/team-a"
    assert env["MLKUBE_REPORT_DIR"] == "s3://models/team-a/team/churn/drift"


def test_pod_identity_instead_of_a_secret() -> None:
    settings = S3_SETTINGS.replace(pod_service_account="mlkube-store")
    m = model(storage={"uri": "s3://models"})
    trainer = _pod(build_trainer_job(m, training_job(), 1, settings))
    predictor = _pod(build_predictor_deployment(m, 1, "a" * 64, settings))
    for pod in (trainer, predictor):
        assert pod["serviceAccountName"] == "mlkube-store"
        assert pod["automountServiceAccountToken"] is False
        assert "AWS_ACCESS_KEY_ID" not in _env(pod["containers"][0])


def test_the_operator_default_store_brings_its_secret() -> None:
    settings = S3_SETTINGS.replace(default_storage="s3://shared/models", s3_secret="mlkube-s3")
    storage = storage_of(model(), settings)
    assert (storage.uri, storage.secret, storage.endpoint) == (
        "s3://shared/models",
        "mlkube-s3",
        ENDPOINT,
    )
    # A Model naming its own bucket does not borrow the operator's credentials.
    assert storage_of(model(storage={"uri": "s3://own"}), settings).secret == ""


def test_a_model_cannot_point_pods_at_an_endpoint_the_operator_does_not_allow() -> None:
    inside = model(storage={**S3, "endpoint": "http://metadata.internal:80"})
    problem = storage_problem(inside, S3_SETTINGS)
    assert problem is not None and "MLKUBE_S3_ALLOWED_ENDPOINTS" in problem
    allowed = S3_SETTINGS.replace(s3_allowed_endpoints=("http://metadata.internal:80",))
    assert storage_problem(inside, allowed) is None
    assert storage_problem(model(storage=S3), S3_SETTINGS) is None


def test_s3_settings_from_the_environment() -> None:
    settings = OperatorSettings.from_env(
        {
            "MLKUBE_DEFAULT_STORAGE": "s3://b/p",
            "MLKUBE_S3_ENDPOINT": "http://127.0.0.1:9000/",
            "MLKUBE_S3_ADDRESSING_STYLE": "path",
            "MLKUBE_S3_ALLOWED_ENDPOINTS": "https://a.example, https://b.example/",
        }
    )
    assert settings.s3_endpoint == "http://127.0.0.1:9000"
    assert settings.s3_allowed_endpoints == ("https://a.example", "https://b.example")
    with pytest.raises(SettingsError, match="MLKUBE_S3_ADDRESSING_STYLE"):
        OperatorSettings.from_env({"MLKUBE_S3_ADDRESSING_STYLE": "sideways"})


def test_a_trainer_the_kubelet_cannot_start_is_explained_by_the_secrets_name() -> None:
    waiting = {
        "reason": "CreateContainerConfigError",
        "message": 'secret "store-creds" not found',
    }
    pod = {
        "metadata": {"name": "churn-v3-abc"},
        "status": {"containerStatuses": [{"state": {"waiting": waiting}}]},
    }
    message = config_error([pod])
    assert message == 'pod churn-v3-abc cannot start: secret "store-creds" not found'
    pending = {
        "metadata": {"name": "p"},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
    }
    assert config_error([pending]) is None


def test_s3_predictors_spread_over_nodes_and_pvc_ones_do_not() -> None:
    s3 = _pod(build_predictor_deployment(model(storage=S3), 1, "a" * 64, S3_SETTINGS))
    (spread,) = s3["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"]["mlkube.io/component"] == "predictor"
    # A claim may be ReadWriteOnce: its predictors must be free to share one node.
    pvc = _pod(build_predictor_deployment(model(), 1, "a" * 64, SETTINGS))
    assert "topologySpreadConstraints" not in pvc


def test_a_search_on_an_s3_store_is_refused_on_the_model() -> None:
    searching = model(storage=S3)
    searching["spec"]["training"]["search"] = {"method": "grid", "candidates": []}
    problem = storage_problem(searching, S3_SETTINGS)
    assert problem is not None and "pvc://" in problem
