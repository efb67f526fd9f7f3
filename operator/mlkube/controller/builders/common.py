"""Pieces every child shares: ownership, labels, the restricted security context, volumes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from mlkube.api import names
from mlkube.api.resources import Manifest
from mlkube.controller.settings import OperatorSettings
from mlkube.controller.spec import Storage, effective_resources

SPEC_HASH: Final = f"{names.GROUP}/spec-hash"
STORE_VOLUME: Final = "store"
TMP_VOLUME: Final = "tmp"
STORE_MOUNT: Final = "/mnt/store"
# Writable corners of the store, each a subPath of the same claim.
INFERENCE_MOUNT: Final = "/mnt/inference"
DRIFT_REPORTS_MOUNT: Final = "/mnt/drift-reports"
MODEL_MOUNT: Final = "/mnt/model"
PVC_ROOT: Final = "/mnt/pvc"
# The pod's writable scratch space: an emptyDir, since the root filesystem is read-only.
TMP_PATH: Final = "/tmp"  # noqa: S108


def with_spec_hash(manifest: Manifest) -> Manifest:
    """Stamps a hash of the desired manifest, so an unchanged child costs no request."""
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    manifest["metadata"].setdefault("annotations", {})[SPEC_HASH] = digest
    return manifest


def pod_security_context(settings: OperatorSettings) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "fsGroup": settings.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(settings: OperatorSettings) -> Manifest:
    """Passes Pod Security ``restricted``; /tmp is an emptyDir since the root is read-only."""
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def store_volume(storage: Storage, *, read_only: bool) -> Manifest:
    return {
        "name": STORE_VOLUME,
        "persistentVolumeClaim": {"claimName": storage.location, "readOnly": read_only},
    }


def tmp_volume() -> Manifest:
    return {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}


def store_subdir_mount(storage: Storage, relative: str, mount_path: str) -> Manifest:
    """One writable directory of the store (created if missing), and nothing else of it.

    Pods that must write get only their own corner: a predictor its inference log, a
    drift check its reports, a trainer its Model's versions. The rest of the store is
    mounted read-only or not at all, so a compromised pod cannot rewrite another version.
    """
    sub_path = "/".join(p for p in (storage.prefix, relative) if p)
    return {"name": STORE_VOLUME, "mountPath": mount_path, "subPath": sub_path}


def resources(requested: Mapping[str, Any] | None, default: Mapping[str, Any]) -> Manifest:
    """The spec's resources, with the default CPU and memory limits where it sets none."""
    return dict(effective_resources(requested, default))


def base_env() -> list[Manifest]:
    return [
        {"name": "HOME", "value": TMP_PATH},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
