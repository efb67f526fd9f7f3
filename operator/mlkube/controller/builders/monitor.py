"""A Monitor's drift check: a CronJob and the least RBAC its pod needs."""

from __future__ import annotations

from typing import Any

from mlkube.api import names
from mlkube.api.resources import Body, Manifest, base_labels, metadata
from mlkube.controller.builders import common
from mlkube.controller.builders.store import drift_store
from mlkube.controller.settings import OperatorSettings
from mlkube.controller.spec import model_ref, name_of, namespace_of, spec_of, storage_of


def _labels(monitor: Body) -> dict[str, str]:
    labels = base_labels(model_ref(monitor), "drift")
    labels[names.LABEL_MONITOR] = name_of(monitor)
    return labels


def build_drift_cronjob(monitor: Body, model: Body, settings: OperatorSettings) -> Manifest:
    """Runs ``mlkube drift-check --monitor NS/NAME`` on the Monitor's schedule.

    ``concurrencyPolicy: Forbid`` because two checks of one window would race to create
    the same retraining; the store is mounted read-write for reports.
    """
    spec = spec_of(monitor)
    storage = storage_of(model, settings)
    store = drift_store(storage, namespace_of(monitor), model_ref(monitor))
    labels = _labels(monitor)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": names.drift_service_account_name(name_of(monitor)),
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": common.pod_security_context(settings),
        "containers": [
            {
                "name": "drift-check",
                "image": settings.runtime_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["mlkube"],
                "args": ["drift-check", "--monitor", f"{namespace_of(monitor)}/{name_of(monitor)}"],
                "env": [*common.base_env(), *store.env],
                "resources": common.resources(None, settings.trainer_resources),
                "securityContext": common.container_security_context(settings),
                "volumeMounts": [
                    *store.mounts,
                    {"name": common.TMP_VOLUME, "mountPath": common.TMP_PATH},
                ],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": [*store.volumes, common.tmp_volume()],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(monitor, names.drift_cronjob_name(name_of(monitor)), labels),
        "spec": {
            "schedule": str(spec.get("schedule") or "*/30 * * * *"),
            "suspend": bool(spec.get("suspend", False)),
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 300,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": 1800,
                    "ttlSecondsAfterFinished": settings.job_ttl_seconds,
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            },
        },
    }


def build_drift_rbac(monitor: Body) -> list[Manifest]:
    """ServiceAccount, Role and RoleBinding: exactly what ``mlkube drift-check`` does.

    Only the verbs the checker calls, each on the one object it calls them on where the
    object is known; the audit-log test compares the grant with the calls.
    """
    name = names.drift_service_account_name(name_of(monitor))
    labels = _labels(monitor)
    monitor_name = [name_of(monitor)]
    rules = [
        # read this Monitor's spec, and write this Monitor's verdict
        {"apiGroups": [names.GROUP], "resources": ["monitors"], "verbs": ["get"]},
        {"apiGroups": [names.GROUP], "resources": ["monitors/status"], "verbs": ["patch"]},
        # read this Monitor's Model's serving version
        {"apiGroups": [names.GROUP], "resources": ["models"], "verbs": ["get"]},
        # retrain on drift, after seeing whether a run is already going (neither verb can
        # be narrowed to names: a list is not of one object, a create's name is new)
        {"apiGroups": [names.GROUP], "resources": ["trainingjobs"], "verbs": ["list", "create"]},
    ]
    rules[0]["resourceNames"] = rules[1]["resourceNames"] = monitor_name
    rules[2]["resourceNames"] = [model_ref(monitor)]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(monitor, name, labels),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(monitor, name, labels),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(monitor, name, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [
                {"kind": "ServiceAccount", "name": name, "namespace": namespace_of(monitor)}
            ],
        },
    ]
