"""The kustomize tree under manifests/: it renders, and what it renders is what we promise.

Covers: every base and overlay renders with the kubectl built with the control plane;
the CRD copy in manifests/crd matches the Python source; every ClusterRole rule carries
a comment saying why (the leader-election Role's too); the operator Deployment meets the
restricted Pod Security profile, has probes on the kopf liveness endpoint, requests and
limits, two replicas electing a leader on a Lease in their own namespace and a rolling
update that keeps one running; the aggregated roles reach view/edit and never grant status.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.controlplane import REPO, ensure_binaries
from mlkube.api.crds import render_crd_files

MANIFESTS = REPO / "manifests"
TARGETS = [".", "default", "overlays/local", "overlays/production"]


def render(target: str) -> list[dict[str, Any]]:
    kubectl = ensure_binaries() / "kubectl"
    out = subprocess.run(
        [str(kubectl), "kustomize", str(MANIFESTS / target)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {target: render(target) for target in TARGETS}


def test_crd_copy_matches_the_source() -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in (MANIFESTS / "crd").glob("*.yaml")}
    on_disk.pop("kustomization.yaml")
    assert on_disk == render_crd_files(), "manifests/crd is stale: run `make crds`"


def test_every_target_renders_the_crds_and_the_operator(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for target, objects in rendered.items():
        kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
        assert {
            ("CustomResourceDefinition", "models.mlkube.io"),
            ("CustomResourceDefinition", "trainingjobs.mlkube.io"),
            ("CustomResourceDefinition", "monitors.mlkube.io"),
            ("Namespace", "mlkube-system"),
            ("ServiceAccount", "mlkube-operator"),
            ("ClusterRole", "mlkube-operator"),
            ("ClusterRoleBinding", "mlkube-operator"),
            ("Role", "mlkube-operator-leader-election"),
            ("RoleBinding", "mlkube-operator-leader-election"),
            ("Deployment", "mlkube-operator"),
            ("Service", "mlkube-operator-metrics"),
            ("ConfigMap", "mlkube-grafana-dashboard"),
        } <= kinds, target
        for obj in objects:
            if obj["kind"] not in {"Namespace", "CustomResourceDefinition"} and obj["kind"] not in {
                "ClusterRole",
                "ClusterRoleBinding",
                "PriorityClass",
            }:
                assert obj["metadata"]["namespace"] == "mlkube-system", (target, obj["kind"])


def test_local_overlay_drops_prometheus_operator_objects(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    def groups(target: str) -> set[str]:
        return {o["apiVersion"].split("/")[0] for o in rendered[target]}

    assert "monitoring.coreos.com" in groups("default")
    assert "monitoring.coreos.com" in groups("overlays/production")
    assert "monitoring.coreos.com" not in groups("overlays/local")


@pytest.mark.parametrize("source", ["role.yaml", "leader_election_role.yaml"])
def test_every_role_rule_says_why(source: str) -> None:
    role = (MANIFESTS / "rbac" / source).read_text(encoding="utf-8").splitlines()
    rules = [n for n, line in enumerate(role) if line.strip().startswith("- apiGroups:")]
    assert rules
    for number in rules:
        assert role[number - 1].strip().startswith("#"), f"{source}:{number + 1}"


def test_aggregated_roles_reach_view_and_edit_without_status(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["default"]
    view = find(objects, "ClusterRole", "mlkube-view")
    edit = find(objects, "ClusterRole", "mlkube-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    for role in (view, edit):
        for rule in role["rules"]:
            assert not any("/" in r for r in rule["resources"]), role["metadata"]["name"]
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}


@pytest.mark.parametrize("target", TARGETS)
def test_operator_deployment_is_restricted_probed_and_elects_a_leader(
    rendered: dict[str, list[dict[str, Any]]], target: str
) -> None:
    deployment = find(rendered[target], "Deployment", "mlkube-operator")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e for e in spec["template"]["spec"]["containers"][0]["env"]}
    assert env["MLKUBE_LEADER_ELECTION"]["value"] == "true"
    namespace = env["MLKUBE_LEADER_ELECTION_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert namespace == "metadata.namespace"
    role = find(rendered[target], "Role", "mlkube-operator-leader-election")
    assert role["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "mlkube-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["mlkube"]
    assert container["args"][0] == "operator"
    liveness = next(a for a in container["args"] if a.startswith("--liveness="))
    port = int(liveness.rsplit(":", 1)[1].split("/")[0])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == port
    assert container["livenessProbe"]["httpGet"]["path"] == liveness.rsplit(str(port), 1)[1]
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert set(container["resources"]) == {"requests", "limits"}
    for key in ("cpu", "memory"):
        assert key in container["resources"]["requests"]
        assert key in container["resources"]["limits"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLKUBE_RUNTIME_IMAGE"]
    service = find(rendered[target], "Service", "mlkube-operator-metrics")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert "metrics" in ports


def test_overlays_change_images() -> None:
    local = find(render("overlays/local"), "Deployment", "mlkube-operator")
    production = find(render("overlays/production"), "Deployment", "mlkube-operator")
    local_container = local["spec"]["template"]["spec"]["containers"][0]
    prod_container = production["spec"]["template"]["spec"]["containers"][0]
    assert local_container["image"] == "mlkube/operator:dev"
    assert {"name": "MLKUBE_RUNTIME_IMAGE", "value": "mlkube/runtime:dev"} in local_container["env"]
    assert prod_container["image"].startswith("registry.example.com/")
    assert prod_container["resources"]["limits"]["memory"] == "1Gi"


def test_manifest_files_are_valid_yaml() -> None:
    for path in MANIFESTS.rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text(encoding="utf-8"))), path
    assert Path(MANIFESTS / "kustomization.yaml").exists()
