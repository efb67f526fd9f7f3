"""How Argo CD, Flux and kstatus judge an mlkube object, run with real interpreters.

Argo CD: the ``health.lua`` under manifests/gitops/argocd runs in an embedded Lua 5.1
(Argo CD's gopher-lua is 5.1) with global ``obj`` and no io/os. Flux: the
``healthCheckExprs`` of manifests/gitops/flux/examples.yaml are evaluated with
cel-python in kustomize-controller's order (a stale observedGeneration first, then
inProgress, failed, current; none true is InProgress). kstatus: the rules of
sigs.k8s.io/cli-utils for resources with standard conditions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import celpy
import yaml
from lupa import lua51

REPO: Final = Path(__file__).resolve().parents[2]
ARGOCD: Final = REPO / "manifests" / "gitops" / "argocd"
FLUX_EXAMPLE: Final = REPO / "manifests" / "gitops" / "flux" / "examples.yaml"
ARGO_TO_KSTATUS: Final = {"Healthy": "Current", "Progressing": "InProgress", "Degraded": "Failed"}


def argocd_health(obj: Mapping[str, Any]) -> dict[str, str]:
    """The table ``health.lua`` of the object's kind returns, as Argo CD runs it."""
    group = obj["apiVersion"].split("/")[0]
    script = (ARGOCD / group / obj["kind"] / "health.lua").read_text(encoding="utf-8")
    lua = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False)
    lua.execute("io = nil; os = nil; require = nil; dofile = nil; loadfile = nil; package = nil")
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def flux_exprs() -> dict[str, dict[str, str]]:
    documents = list(yaml.safe_load_all(FLUX_EXAMPLE.read_text(encoding="utf-8")))
    kustomization = next(d for d in documents if d["kind"] == "Kustomization")
    return {e["kind"]: e for e in kustomization["spec"]["healthCheckExprs"]}


def flux_verdict(obj: Mapping[str, Any]) -> str:
    """kustomize-controller's StatusEvaluator over the expressions of the object's kind."""
    exprs = flux_exprs()[obj["kind"]]
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"].get("generation"):
        return "InProgress"
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    for field, verdict in (
        ("inProgress", "InProgress"),
        ("failed", "Failed"),
        ("current", "Current"),
    ):
        if field not in exprs:
            continue
        result = env.program(env.compile(exprs[field])).evaluate(activation)
        if not isinstance(result, celpy.celtypes.BoolType):
            raise TypeError(f"{obj['kind']}.{field} gave {result!r}, not a bool")
        if result:
            return verdict
    return "InProgress"


def kstatus_verdict(obj: Mapping[str, Any]) -> str:
    """sigs.k8s.io/cli-utils kstatus for a custom resource with standard conditions.

    One deliberate difference: a missing status or Ready condition is InProgress here,
    as Argo CD and Flux judge it with mlkube's scripts; plain kstatus calls an object
    without conditions Current. The operator writes Ready on its first pass, so on real
    objects the two agree (tests/integration/test_rbac.py checks).
    """
    status = obj.get("status")
    if not status:
        return "InProgress"
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return "InProgress"
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if conditions.get("Reconciling", {}).get("status") == "True":
        return "InProgress"
    if conditions.get("Stalled", {}).get("status") == "True":
        return "Failed"
    if conditions.get("Ready", {}).get("status") != "True":
        return "InProgress"
    return "Current"
