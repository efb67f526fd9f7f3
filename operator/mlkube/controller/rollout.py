"""The serving version's predictor: Deployment, Service, HPA and PDB, and whether it is out.

Every ``ensure_child`` outcome is acted on: an object with a child's name that this
Model does not own is left alone, and the rollout reports it as ``blocked`` with the
object in the way, so the Model says so instead of rolling out forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mlkube.api import names
from mlkube.api.resources import Body, Manifest
from mlkube.controller.builders import (
    build_predictor_deployment,
    build_predictor_hpa,
    build_predictor_pdb,
    build_predictor_service,
)
from mlkube.controller.children import Controller, Outcome, delete_if_owned, ensure_child
from mlkube.controller.registry import Registry
from mlkube.controller.spec import name_of, namespace_of

RolloutState = Literal["none", "rolling", "available", "blocked"]


@dataclass(frozen=True)
class Rollout:
    state: RolloutState
    # "Deployment churn-predictor": a child's name held by an object this Model does not own.
    blocked_by: str | None = None


async def ensure_predictor(ctl: Controller, model: Body, registry: Registry) -> Rollout:
    """Makes the predictor's children serve ``registry.serving_version``; reports the state."""
    entry = registry.entry(registry.serving_version)
    version = registry.serving_version
    if entry is None or version is None:
        return Rollout("none")
    desired: list[Manifest] = [
        build_predictor_deployment(
            model,
            version,
            str(entry.get("sha256") or ""),
            ctl.settings,
            str(entry.get("onnxSha256") or ""),
        ),
        build_predictor_service(model),
        build_predictor_hpa(model),
    ]
    pdb = build_predictor_pdb(model)
    if pdb is not None:
        desired.append(pdb)
    blocked = [
        str(m["kind"]) for m in desired if (await ensure_child(ctl, m))[0] is Outcome.NOT_OWNED
    ]
    if pdb is None:
        # A foreign PodDisruptionBudget of that name is not ours to delete, and not in the way.
        await delete_if_owned(
            ctl,
            "PodDisruptionBudget",
            namespace_of(model),
            names.predictor_name(name_of(model)),
            str(model["metadata"]["uid"]),
        )
    if blocked:
        return Rollout("blocked", f"{blocked[0]} {names.predictor_name(name_of(model))}")
    deployment = ctl.cache.get(
        "Deployment", namespace_of(model), names.predictor_name(name_of(model))
    )
    return Rollout("available" if available(deployment, version) else "rolling")


def available(deployment: Mapping[str, Any] | None, version: int) -> bool:
    """Available replicas, all of them updated to the template serving ``version``."""
    if deployment is None:
        return False
    template = (deployment.get("spec") or {}).get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if labels.get(names.LABEL_VERSION) != str(version):
        return False
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(
        deployment["metadata"].get("generation") or 0
    ):
        return False
    updated = int(status.get("updatedReplicas") or 0)
    return (
        int(status.get("availableReplicas") or 0) >= 1
        and updated >= 1
        and updated == int(status.get("replicas") or 0)
    )
