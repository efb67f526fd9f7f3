"""The predictor: Deployment running ``mlkube serve``, its Service, HPA and PDB."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mlkube.api import names
from mlkube.api.resources import Body, Manifest, base_labels, metadata
from mlkube.controller.builders import common
from mlkube.controller.builders.store import predictor_store
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


@dataclass(frozen=True)
class Track:
    """A second Deployment of the predictor beside the stable one (a canary): its name,
    the labels that select its pods (added to the pod labels), and its replica count."""

    name: str
    selector: Mapping[str, str]
    replicas: int


def build_predictor_deployment(
    model: Body,
    version: int,
    sha256: str,
    settings: OperatorSettings,
    onnx_sha256: str = "",
    *,
    track: Track | None = None,
) -> Manifest:
    """Serves ``version``; a new version changes the template and so rolls the pods.

    ``replicas`` is left out of the stable Deployment: the HorizontalPodAutoscaler owns
    it. A ``track`` (a canary) has its own name, selector and fixed replica count.
    """
    model_name = name_of(model)
    serving = _serving(model)
    storage = storage_of(model, settings)
    labels = base_labels(model_name, "predictor")
    pod_labels = {**labels, names.LABEL_VERSION: str(version)}
    if track is not None:
        pod_labels.update(track.selector)
    store = predictor_store(storage, namespace_of(model), model_name, version)
    args = ["serve", *store.args, "--port", str(HTTP_PORT)]
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
        "env": [*common.base_env(), *store.env],
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
            *store.mounts,
            {"name": common.TMP_VOLUME, "mountPath": common.TMP_PATH},
        ],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": common.pod_security_context(settings),
        "containers": [container],
        "volumes": [*store.volumes, common.tmp_volume()],
    }
    if store.service_account:
        pod_spec["serviceAccountName"] = store.service_account
    if storage.is_s3:
        # Replicas share no disk, so they may (and should) run on different nodes.
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(model)},
                "matchLabelKeys": ["pod-template-hash"],
            }
        ]
    if serving.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(serving["nodeSelector"])
    if serving.get("tolerations"):
        pod_spec["tolerations"] = list(serving["tolerations"])
    name = names.predictor_name(model_name) if track is None else track.name
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(model, name, pod_labels),
        "spec": {
            "selector": {
                "matchLabels": dict(selector_labels(model) if track is None else track.selector)
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 5,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
    if track is not None:
        deployment["spec"]["replicas"] = track.replicas
    return deployment


def build_predictor_service(
    model: Body, *, name: str | None = None, selector: Mapping[str, str] | None = None
) -> Manifest:
    """The Service of the predictor's pods (``name``/``selector``: a canary's own)."""
    model_name = name_of(model)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            model, name or names.predictor_name(model_name), base_labels(model_name, "predictor")
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector or selector_labels(model)),
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
