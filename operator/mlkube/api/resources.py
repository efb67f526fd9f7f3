"""The one builder of a TrainingJob resource, and the ownership and labels every child shares.

The operator creates TrainingJobs (initial and scheduled runs) and so does the drift
checker in its own pod (drift runs); both call ``training_job_resource`` so a run looks
the same whoever made it, and the operator's label selectors find every one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlkube.api import names
from mlkube.api.status import Trigger

Manifest = dict[str, Any]
Body = Mapping[str, Any]


def owner_reference(owner: Body, *, block_owner_deletion: bool = True) -> Manifest:
    """Makes ``owner`` the controller of a child, so deleting it collects the child.

    ``block_owner_deletion`` needs permission on the owner's finalizers where the API
    server enforces it; the drift checker's narrow Role has none, so it leaves it off.
    """
    return {
        "apiVersion": owner.get("apiVersion", names.API_VERSION),
        "kind": owner["kind"],
        "name": str(owner["metadata"]["name"]),
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


def base_labels(model: str, component: str) -> dict[str, str]:
    return {
        names.LABEL_MANAGED_BY: names.MANAGED_BY,
        names.LABEL_MODEL: model,
        names.LABEL_COMPONENT: component,
    }


def metadata(
    owner: Body, name: str, labels: Mapping[str, str], *, block_owner_deletion: bool = True
) -> Manifest:
    return {
        "name": name,
        "namespace": str(owner["metadata"].get("namespace") or "default"),
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner, block_owner_deletion=block_owner_deletion)],
    }


def training_job_resource(
    model: Body,
    name: str,
    trigger: Trigger,
    reason: str,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    block_owner_deletion: bool = True,
) -> Manifest:
    """A TrainingJob of ``model``, owned by it, labelled with its trigger."""
    model_name = str(model["metadata"]["name"])
    all_labels = {**base_labels(model_name, "training"), names.LABEL_TRIGGER: trigger.value}
    all_labels.update(labels or {})
    meta = metadata(model, name, all_labels, block_owner_deletion=block_owner_deletion)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.TRAINING_JOB,
        "metadata": meta,
        "spec": {
            "modelRef": {"name": model_name},
            "trigger": trigger.value,
            "reason": reason[:2048],
        },
    }
