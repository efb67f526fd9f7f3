"""A minimal Gateway API HTTPRoute CRD for the test control plane.

The operator writes HTTPRoutes when a Model names a Gateway parent; the API server only
needs to know the kind to store them (no gateway controller runs in the tests). The
schema keeps ``spec`` as given, which is what the tests read back: the parents and the
backends' weights.
"""

from __future__ import annotations

import json
from typing import Any

from harness.controlplane import ControlPlane

GROUP = "gateway.networking.k8s.io"

HTTPROUTE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": f"httproutes.{GROUP}",
        # *.k8s.io groups are protected: the upstream CRDs carry their approval like this.
        "annotations": {
            "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/3328"
        },
    },
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "HTTPRoute",
            "listKind": "HTTPRouteList",
            "plural": "httproutes",
            "singular": "httproute",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def install_httproute_crd(plane: ControlPlane) -> None:
    """Applies the CRD (idempotent) and waits until the API serves the kind."""
    applied = plane.kubectl("apply", "-f", "-", input_text=json.dumps(HTTPROUTE_CRD), check=False)
    if applied.returncode != 0:
        raise RuntimeError(f"HTTPRoute CRD: {applied.stderr.strip()}")
    plane.kubectl("wait", "--for=condition=Established", f"crd/httproutes.{GROUP}", "--timeout=60s")
