"""The kustomize tree against a real apiserver: server-side dry runs, Pod Security, aggregation.

The test cluster has no Prometheus Operator, so a module fixture installs stand-in CRDs
for monitoring.coreos.com (ServiceMonitor, PodMonitor, PrometheusRule; open schemas) so
the default base and the production overlay can be dry-run whole. The operator's pod
template is dry-run as a Pod in mlkube-system, which enforces the restricted profile, so
Pod Security admission itself judges it. The aggregated roles are applied for real and
checked through `kubectl auth can-i` as ServiceAccounts bound to the built-in view/edit.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from harness.controlplane import REPO, ControlPlane

MANIFESTS = REPO / "manifests"
MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


def stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def rendered(control_plane: ControlPlane, target: str) -> list[dict[str, Any]]:
    out = control_plane.kubectl("kustomize", str(MANIFESTS / target)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def installable(control_plane: ControlPlane, crds: list[str]) -> ControlPlane:
    """Stand-in monitoring CRDs, the real namespace and ServiceAccount (dry runs need them)."""
    documents = [stand_in_crd(kind, plural) for kind, plural in MONITORING_KINDS.items()]
    control_plane.kubectl(
        "apply", "-f", "-", input_text="\n---\n".join(json.dumps(d) for d in documents)
    )
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *[f"crd/{plural}.monitoring.coreos.com" for plural in MONITORING_KINDS.values()],
    )
    objects = rendered(control_plane, "default")
    for kind in ("Namespace", "ServiceAccount"):
        obj = next(o for o in objects if o["kind"] == kind)
        control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(obj))
    return control_plane


@pytest.mark.parametrize("target", [".", "default", "overlays/local", "overlays/production"])
@pytest.mark.parametrize("mode", ["client-side", "server-side"])
def test_server_side_dry_run_accepts_every_object(
    installable: ControlPlane, target: str, mode: str
) -> None:
    """Both `kubectl apply -k` and the documented `kubectl apply --server-side -k`."""
    expected = len(rendered(installable, target))
    apply = ["apply", "--server-side"] if mode == "server-side" else ["apply"]
    result = installable.kubectl(
        *apply, "--dry-run=server", "-k", str(MANIFESTS / target), check=False
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.endswith("(server dry run)")]
    assert len(lines) == expected, result.stdout


def pod_from_template(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "mlkube-system", **template["metadata"]},
        "spec": template["spec"],
    }


@pytest.mark.parametrize("target", ["default", "overlays/local", "overlays/production"])
def test_operator_pod_is_admitted_under_restricted(installable: ControlPlane, target: str) -> None:
    deployment = next(o for o in rendered(installable, target) if o["kind"] == "Deployment")
    pod = pod_from_template(deployment, "operator-admission-check")
    pod["spec"].pop("priorityClassName", None)  # the PriorityClass is only dry-run created
    result = installable.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=json.dumps(pod), check=False
    )
    assert result.returncode == 0, result.stderr
    assert "violate" not in result.stderr

    escalating = pod_from_template(deployment, "operator-admission-negative")
    escalating["spec"].pop("priorityClassName", None)
    escalating["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = installable.kubectl(
        "apply", "--dry-run=server", "-f", "-", input_text=json.dumps(escalating), check=False
    )
    assert refused.returncode != 0
    assert "allowPrivilegeEscalation" in refused.stderr


def can_i(
    plane: ControlPlane, who: str, verb: str, resource: str, namespace: str, *extra: str
) -> bool:
    result = plane.kubectl(
        "auth", "can-i", verb, resource, "-n", namespace, f"--as={who}", *extra, check=False
    )
    answer = result.stdout.strip()
    if answer not in {"yes", "no"}:
        raise subprocess.CalledProcessError(result.returncode, result.args, answer, result.stderr)
    return answer == "yes"


def test_namespace_users_get_mlkube_through_view_and_edit(
    installable: ControlPlane, namespace: str
) -> None:
    installable.kubectl("apply", "-f", str(MANIFESTS / "rbac" / "aggregate_roles.yaml"))
    for account, role in (("viewer", "view"), ("editor", "edit")):
        installable.kubectl("create", "serviceaccount", account, "-n", namespace)
        installable.kubectl(
            "create",
            "rolebinding",
            account,
            f"--clusterrole={role}",
            f"--serviceaccount={namespace}:{account}",
            "-n",
            namespace,
        )
    viewer = f"system:serviceaccount:{namespace}:viewer"
    editor = f"system:serviceaccount:{namespace}:editor"
    for resource in ("models.mlkube.io", "trainingjobs.mlkube.io", "monitors.mlkube.io"):
        assert can_i(installable, viewer, "list", resource, namespace)
        assert not can_i(installable, viewer, "create", resource, namespace)
        assert can_i(installable, editor, "create", resource, namespace)
        assert can_i(installable, editor, "delete", resource, namespace)
        assert not can_i(installable, editor, "patch", resource, namespace, "--subresource=status")
        assert not can_i(installable, editor, "list", resource, "default")
