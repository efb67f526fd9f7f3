"""How each kind of pod reaches the Model's store: a claim's corners, or a bucket.

A ``pvc://`` store is mounted, and each pod gets only its corner writable (a trainer its
Model's versions, a predictor its inference log, a drift check its reports). An ``s3://``
store mounts nothing: the pods name ``s3://`` URIs, the predictor downloads its version
into an emptyDir, and the credentials come from the Secret's keys as environment variables
(or from the pod's identity), so predictors can run on any node and no pod shares a
writable disk with another. One place decides both, so the three builders cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from mlkube.api import names
from mlkube.api.resources import Manifest
from mlkube.controller.builders import common
from mlkube.controller.spec import Storage

MODEL_CACHE_VOLUME: Final = "model-cache"
MODEL_CACHE_MOUNT: Final = "/mnt/model-cache"
# Keys the Secret of an S3 store holds; the session token is optional.
SECRET_KEYS: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
OPTIONAL_SECRET_KEYS: Final = ("AWS_SESSION_TOKEN",)


@dataclass
class PodStore:
    """What a pod needs to reach the store: arguments, environment, volumes and mounts."""

    args: list[str] = field(default_factory=list)
    env: list[Manifest] = field(default_factory=list)
    volumes: list[Manifest] = field(default_factory=list)
    mounts: list[Manifest] = field(default_factory=list)
    service_account: str = ""


def s3_env(storage: Storage) -> list[Manifest]:
    """The standard AWS environment the runtime's S3 client reads; the Secret's values are
    referenced, never copied, and only its name is passed on for error messages."""
    env: list[Manifest] = [
        {"name": "MLKUBE_S3_ADDRESSING_STYLE", "value": storage.addressing_style}
    ]
    if storage.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": storage.endpoint})
    if storage.region:
        env.append({"name": "AWS_REGION", "value": storage.region})
    if storage.secret:
        env.append({"name": "MLKUBE_S3_SECRET_NAME", "value": storage.secret})
        for key in (*SECRET_KEYS, *OPTIONAL_SECRET_KEYS):
            ref: dict[str, str | bool] = {"name": storage.secret, "key": key}
            if key in OPTIONAL_SECRET_KEYS:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def trainer_store(storage: Storage, namespace: str, model: str) -> PodStore:
    """``--store`` (and, on a claim, ``--model-root``: only this Model's directory)."""
    if storage.is_s3:
        return PodStore(
            args=["--store", storage.uri],
            env=s3_env(storage),
            service_account=storage.service_account,
        )
    return PodStore(
        args=["--store", storage.mount_path, "--model-root", common.MODEL_MOUNT],
        volumes=[common.store_volume(storage, read_only=False)],
        # Only this Model's directory of the store: a trainer cannot touch another Model's
        # versions, inference logs or reports.
        mounts=[
            common.store_subdir_mount(
                storage, names.model_dir(namespace, model), common.MODEL_MOUNT
            )
        ],
    )


def predictor_store(storage: Storage, namespace: str, model: str, version: int) -> PodStore:
    """``--model-dir`` and ``--log-dir``; on S3 also the emptyDir the version is fetched into."""
    version_dir = names.version_dir(namespace, model, version)
    if storage.is_s3:
        inference = f"{storage.uri}/{names.inference_dir(namespace, model)}"
        return PodStore(
            args=[
                "--model-dir",
                f"{storage.uri}/{version_dir}",
                "--log-dir",
                inference,
                "--model-cache",
                MODEL_CACHE_MOUNT,
            ],
            env=s3_env(storage),
            volumes=[{"name": MODEL_CACHE_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}}],
            mounts=[{"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_MOUNT}],
            service_account=storage.service_account,
        )
    return PodStore(
        args=[
            "--model-dir",
            f"{storage.mount_path}/{version_dir}",
            "--log-dir",
            common.INFERENCE_MOUNT,
        ],
        env=[{"name": "MLKUBE_STORE_ROOT", "value": storage.mount_path}],
        volumes=[common.store_volume(storage, read_only=False)],
        mounts=[
            {"name": common.STORE_VOLUME, "mountPath": common.STORE_MOUNT, "readOnly": True},
            common.store_subdir_mount(
                storage, names.inference_dir(namespace, model), common.INFERENCE_MOUNT
            ),
        ],
    )


def drift_store(storage: Storage, namespace: str, model: str) -> PodStore:
    """``MLKUBE_STORE_ROOT`` (read) and ``MLKUBE_REPORT_DIR`` (the only place it writes)."""
    reports = names.drift_reports_dir(namespace, model)
    if storage.is_s3:
        return PodStore(
            env=[
                {"name": "MLKUBE_STORE_ROOT", "value": storage.uri},
                {"name": "MLKUBE_REPORT_DIR", "value": f"{storage.uri}/{reports}"},
                *s3_env(storage),
            ]
        )
    return PodStore(
        env=[
            {"name": "MLKUBE_STORE_ROOT", "value": storage.mount_path},
            {"name": "MLKUBE_REPORT_DIR", "value": common.DRIFT_REPORTS_MOUNT},
        ],
        volumes=[common.store_volume(storage, read_only=False)],
        mounts=[
            {"name": common.STORE_VOLUME, "mountPath": common.STORE_MOUNT, "readOnly": True},
            common.store_subdir_mount(storage, reports, common.DRIFT_REPORTS_MOUNT),
        ],
    )
