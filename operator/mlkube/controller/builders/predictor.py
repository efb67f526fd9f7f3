"""The predictor: Deployment running ``mlkube serve``, its Service, HPA and PDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mlkube.api import names
from mlkube.api.resources import Body, Manifest, base_labels, metadata
from mlkube.controller.builders import common
from mlkube.controller.settings import OperatorSettings
from mlkube.controller.spec import name_of, namespace_of, quantity, spec_of, storage_of

HTTP_PORT: Final = 8080
SERVICE_PORT: Final = 80


def _serving(model: Body) -> Mapping[str, Any]:
    return spec_of(model).get("serving") or {}


def autoscaling(model: Body) -> dict[str, int]:
    """minReplicas/maxReplicas/target with the schema's defaults filled in."""
    spec = _serving(model).get("autoscaling") or {}
    low = int(spec.get("minReplicas") or 1)
    return {
        "minReplicas": low,
        "maxReplicas": max(low, int(spec.get("maxReplicas") or 3)),
        "targetCPUUtilizationPercentage": int(spec.get("targetCPUUtilizationPercentage") or 70),
    }


def sized_workers(serving: Mapping[str, Any], default: Mapping[str, Any]) -> tuple[int, Manifest]:
    """Server workers and container resources that agree with each other.

    A worker is one process whose event loop and prediction thread share one GIL: it keeps
    at most one core busy. Without ``workers``, a predictor runs one worker per whole core
    of its CPU limit (at least one). With ``workers`` and no CPU in ``resources``, the
    default CPU request and limit are per worker and multiplied by it."""
    requested = serving.get("resources") or {}
    workers = int(serving.get("workers") or 0)
    user_cpu = "cpu" in (requested.get("requests") or {}) or "cpu" in (
        requested.get("limits") or {}
    )
    if workers and not user_cpu:
        default = {
            kind: {
                **values,
                **({"cpu": _times(values["cpu"], workers)} if "cpu" in values else {}),
            }
            for kind, values in default.items()
        }
    resources = common.resources(requested, default)
    if not workers:
        limit = resources["limits"].get("cpu")
        try:
            workers = max(1, int(quantity(limit))) if limit is not None else 1
        except ValueError:
            workers = 1  # the API server refuses a bad quantity itself
    return workers, resources


def _times(cpu: str, factor: int) -> str:
    return f"{int(quantity(cpu) * 1000 * factor)}m"


def selector_labels(model: Body) -> dict[str, str]:
    """Never changes for a Model (a Deployment's selector is immutable)."""
    return {names.LABEL_MODEL: name_of(model), names.LABEL_COMPONENT: "predictor"}


def build_predictor_deployment(
    model: Body, version: int, sha256: str, settings: OperatorSettings, onnx_sha256: str = ""
) -> Manifest:
    """Serves ``version``; a new version changes the template and so rolls the pods.

    ``replicas`` is left out: the HorizontalPodAutoscaler owns it.
    """
    model_name = name_of(model)
    serving = _serving(model)
    storage = storage_of(model, settings)
    labels = base_labels(model_name, "predictor")
    pod_labels = {**labels, names.LABEL_VERSION: str(version)}
    model_dir = (
        f"{storage.mount_path}/{names.version_dir(namespace_of(model), model_name, version)}"
    )
    args = ["serve", "--model-dir", model_dir, "--port", str(HTTP_PORT)]
    args += ["--log-dir", common.INFERENCE_MOUNT]
    if sha256:
        args += ["--sha256", sha256]
    if onnx_sha256:
        args += ["--onnx-sha256", onnx_sha256]
    workers, resources = sized_workers(serving, settings.predictor_resources)
    args += ["--workers", str(workers)]
    sample_rate = (serving.get("inferenceLogging") or {}).get("sampleRate")
    args += ["--sample-rate", str(0.1 if sample_rate is None else float(sample_rate))]
    probe_http = {"port": "http"}
    container: dict[str, Any] = {
        "name": "server",
        "image": settings.runtime_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["mlkube"],
        "args": args,
        "env": [*common.base_env(), {"name": "MLKUBE_STORE_ROOT", "value": storage.mount_path}],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {**probe_http, "path": f"/v2/models/{model_name}/ready"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {**probe_http, "path": "/v2/health/live"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {**probe_http, "path": "/v2/health/live"},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "resources": resources,
        "securityContext": common.container_security_context(settings),
        "volumeMounts": [
            *common.base_mounts(store_read_only=True),
            common.store_subdir_mount(
                storage,
                names.inference_dir(namespace_of(model), model_name),
                common.INFERENCE_MOUNT,
            ),
        ],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": common.pod_security_context(settings),
        "containers": [container],
        "volumes": [common.store_volume(storage, read_only=False), common.tmp_volume()],
    }
    if serving.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(serving["nodeSelector"])
    if serving.get("tolerations"):
        pod_spec["tolerations"] = list(serving["tolerations"])
    deployment_meta = metadata(model, names.predictor_name(model_name), pod_labels)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": deployment_meta,
        "spec": {
            "selector": {"matchLabels": selector_labels(model)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def build_predictor_service(model: Body) -> Manifest:
    model_name = name_of(model)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            model, names.predictor_name(model_name), base_labels(model_name, "predictor")
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(model),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def predictor_endpoint(model: Body) -> str:
    """The in-cluster URL clients call (the Service's DNS name)."""
    return f"http://{names.predictor_name(name_of(model))}.{namespace_of(model)}.svc.cluster.local"


def build_predictor_hpa(model: Body) -> Manifest:
    model_name = name_of(model)
    scaling = autoscaling(model)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(
            model, names.predictor_name(model_name), base_labels(model_name, "predictor")
        ),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": names.predictor_name(model_name),
            },
            "minReplicas": scaling["minReplicas"],
            "maxReplicas": scaling["maxReplicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling["targetCPUUtilizationPercentage"],
                        },
                    },
                }
            ],
        },
    }


def build_predictor_pdb(model: Body) -> Manifest | None:
    """A PodDisruptionBudget only when more than one replica is promised (else it blocks drains)."""
    if autoscaling(model)["minReplicas"] <= 1:
        return None
    model_name = name_of(model)
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(
            model, names.predictor_name(model_name), base_labels(model_name, "predictor")
        ),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(model)}},
    }
