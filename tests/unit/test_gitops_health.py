"""GitOps health of the three kinds, run by the real engines' languages.

Argo CD: each ``health.lua`` runs in an embedded Lua 5.1 (lupa; Argo CD's gopher-lua is
5.1) with only the libraries Argo CD opens, against every case of its ``health_test.yaml``,
exactly as Argo CD's own resource_customizations tests read them. Flux: the
``healthCheckExprs`` of the documented Kustomization are evaluated with cel-python,
following kustomize-controller's order (stale observedGeneration first, then inProgress,
failed, current; none true means InProgress). Both must give the verdict kstatus gives,
so Argo CD, Flux and `kstatus` agree on every test object. The argocd-cm patch must be
in sync with the scripts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from harness.gitops import (
    ARGO_TO_KSTATUS,
    ARGOCD,
    argocd_health,
    flux_exprs,
    flux_verdict,
    kstatus_verdict,
)

KINDS = ["Model", "TrainingJob", "Monitor"]


def argocd_cases() -> list[tuple[str, dict[str, Any], Path]]:
    cases = []
    for kind in KINDS:
        spec = yaml.safe_load((ARGOCD / "mlkube.io" / kind / "health_test.yaml").read_text())
        for case in spec["tests"]:
            cases.append(
                (kind, case["healthStatus"], ARGOCD / "mlkube.io" / kind / case["inputPath"])
            )
    return cases


CASES = argocd_cases()
IDS = [f"{kind}-{path.stem}" for kind, _, path in CASES]


@pytest.mark.parametrize(("kind", "expected", "path"), CASES, ids=IDS)
def test_health_lua_matches_its_test_case(kind: str, expected: dict[str, str], path: Path) -> None:
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert obj["kind"] == kind
    assert argocd_health(obj) == expected


@pytest.mark.parametrize(("kind", "expected", "path"), CASES, ids=IDS)
def test_flux_cel_and_kstatus_agree_with_argocd(
    kind: str, expected: dict[str, str], path: Path
) -> None:
    obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    verdict = ARGO_TO_KSTATUS[expected["status"]]
    assert flux_verdict(obj) == verdict
    assert kstatus_verdict(obj) == verdict


def test_cases_cover_every_verdict_for_every_kind() -> None:
    for kind in KINDS:
        seen = {expected["status"] for k, expected, _ in CASES if k == kind}
        assert seen == {"Healthy", "Progressing", "Degraded"}, kind


def test_lua_sandbox_has_no_os_access() -> None:
    lua = lua51.LuaRuntime(register_eval=False)
    lua.execute("io = nil; os = nil")
    assert lua.eval("os") is None
    assert lua.eval("string.format('%.4g', 0.953333)") == "0.9533"


def test_every_kind_has_flux_expressions() -> None:
    exprs = flux_exprs()
    assert set(exprs) == set(KINDS)
    for entry in exprs.values():
        assert entry["apiVersion"] == "mlkube.io/v1alpha1"
        assert {"current", "failed", "inProgress"} <= set(entry)


def test_argocd_cm_patch_is_in_sync_with_the_scripts() -> None:
    spec = importlib.util.spec_from_file_location("render_cm", ARGOCD / "render_cm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert (ARGOCD / "argocd-cm-patch.yaml").read_text(encoding="utf-8") == rendered, (
        "run python manifests/gitops/argocd/render_cm.py"
    )
    data = yaml.safe_load(rendered)["data"]
    for kind in KINDS:
        script = (ARGOCD / "mlkube.io" / kind / "health.lua").read_text(encoding="utf-8")
        assert data[f"resource.customizations.health.mlkube.io_{kind}"] == script
