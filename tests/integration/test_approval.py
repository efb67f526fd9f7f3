"""An approval says who, and the API server makes sure it is true.

The shipped ValidatingAdmissionPolicy (``manifests/admission``) is installed on the real
control plane; a ServiceAccount ``bob`` with a Role that lets it edit Models tries to
record ``alice`` as the approver of a pin and is refused, then records itself and is let
through. The plugin asks the API server who its caller is (a SelfSubjectReview), so what
``kubectl mlkube promote`` records is what the policy accepts.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from harness.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "manifests" / "admission" / "approval_policy.yaml"
MODEL = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "iris"},
    "spec": {
        "task": "classification",
        "training": {
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "data": {"uri": "sklearn://iris", "target": "target"},
        },
    },
}
EDITOR_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "model-editor"},
    "rules": [
        {"apiGroups": ["mlkube.io"], "resources": ["models"], "verbs": ["get", "patch", "update"]}
    ],
}


def as_bob(plane: ControlPlane, namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig for ServiceAccount bob, who may edit Models in ``namespace``."""
    plane.kubectl("-n", namespace, "create", "serviceaccount", "bob")
    plane.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(EDITOR_ROLE))
    plane.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "bob-edits",
        "--role=model-editor",
        f"--serviceaccount={namespace}:bob",
    )
    token = plane.kubectl("-n", namespace, "create", "token", "bob").stdout.strip()
    config = yaml.safe_load(plane.kubeconfig.read_text())
    config["users"] = [{"name": "bob", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "bob"
    config["contexts"][0]["context"]["namespace"] = namespace
    path = tmp_path / "bob.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def annotate(plane: ControlPlane, config: Path, approver: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(plane.bin_dir / "kubectl"),
            f"--kubeconfig={config}",
            "annotate",
            "--overwrite",
            "model",
            "iris",
            f"mlkube.io/approved-by={approver}",
            "mlkube.io/approved-version=1",
            "mlkube.io/approval-reason=looked fine",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refused_once_active(
    plane: ControlPlane, namespace: str, config: Path
) -> subprocess.CompletedProcess[str]:
    """The first forged write the policy refuses (a new policy takes a moment to apply)."""
    deadline = time.monotonic() + 30
    while True:
        result = annotate(plane, config, "alice")
        if result.returncode != 0 or time.monotonic() > deadline:
            return result
        # not enforced yet: take the forgery back and try again
        plane.kubectl("-n", namespace, "annotate", "model", "iris", "mlkube.io/approved-by-")
        time.sleep(0.5)


@pytest.fixture
def policy(control_plane: ControlPlane, crds: list[str]) -> Iterator[None]:
    """The shipped policy, for this test only (other tests share the control plane)."""
    control_plane.kubectl("apply", "--server-side", "-f", str(POLICY))
    yield
    control_plane.kubectl("delete", "-f", str(POLICY), "--wait=false")


def test_a_forged_approver_is_refused_and_the_real_one_recorded(
    control_plane: ControlPlane, namespace: str, policy: None, tmp_path: Path
) -> None:
    plane = control_plane
    plane.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(MODEL))
    config = as_bob(plane, namespace, tmp_path)
    bob = f"system:serviceaccount:{namespace}:bob"

    forged = refused_once_active(plane, namespace, config)
    assert forged.returncode != 0, "the policy let bob name alice as the approver"
    assert f"must name the user making the change ({bob}), not alice" in forged.stderr

    honest = annotate(plane, config, bob)
    assert honest.returncode == 0, honest.stderr
    model = json.loads(plane.kubectl("-n", namespace, "get", "model", "iris", "-o", "json").stdout)
    assert model["metadata"]["annotations"]["mlkube.io/approved-by"] == bob

    # the plugin records the approver as the API server names the caller
    from mlkube.plugin.client import connect

    assert connect(str(config), None, None).whoami() == bob

    # changing the reason while leaving bob's name is a new approval too: only bob may
    other = plane.kubectl(
        "-n",
        namespace,
        "annotate",
        "--overwrite",
        "model",
        "iris",
        "mlkube.io/approval-reason=changed by someone else",
        check=False,
    )
    assert other.returncode != 0 and "must name the user making the change" in other.stderr
