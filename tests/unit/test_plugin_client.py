"""The plugin says plainly when mlkube is not installed, instead of "models not found"."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from mlkube.plugin.client import NOT_INSTALLED, PluginError, api_errors


def not_found(body: str) -> ApiException:
    error = ApiException(status=404, reason="Not Found")
    error.body = body
    return error


def test_a_missing_resource_type_means_mlkube_is_not_installed() -> None:
    with pytest.raises(PluginError) as raised, api_errors("models", "default"):
        raise not_found("404 page not found\n")
    assert str(raised.value) == NOT_INSTALLED
    assert "kubectl apply --server-side -k" in str(raised.value)


def test_a_missing_object_is_still_named() -> None:
    status = {
        "kind": "Status",
        "reason": "NotFound",
        "message": 'models.mlkube.io "iris" not found',
        "details": {"name": "iris", "group": "mlkube.io", "kind": "models"},
    }
    with pytest.raises(PluginError) as raised, api_errors("model iris", "team"):
        raise not_found(json.dumps(status))
    assert str(raised.value) == "model iris not found in namespace team"
