"""The connection: kubeconfig, context and namespace as kubectl resolves them.

``--kubeconfig`` (else ``$KUBECONFIG``, else ``~/.kube/config``), ``--context`` (else the
current context) and ``-n`` (else the context's namespace, else ``default``), so the
plugin talks to the same cluster and namespace as the ``kubectl`` that launched it.
Apiserver errors become ``PluginError`` with the apiserver's own message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from mlkube.api import names

Body = dict[str, Any]
# The client's kubeconfig loaders carry no annotations; used through Any on purpose.
loaders: Any = config


class PluginError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


@dataclass(frozen=True)
class Connection:
    """The resolved target of every command: an API client and a namespace."""

    custom: Any
    namespace: str
    user: str

    def get(self, plural: str, name: str, namespace: str | None = None) -> Body:
        with api_errors(f"{plural.rstrip('s')} {name}", namespace or self.namespace):
            body: Body = self.custom.get_namespaced_custom_object(
                names.GROUP, names.VERSION, namespace or self.namespace, plural, name
            )
        return body

    def list(self, plural: str, all_namespaces: bool = False) -> list[Body]:
        with api_errors(plural, None if all_namespaces else self.namespace):
            if all_namespaces:
                result = self.custom.list_cluster_custom_object(names.GROUP, names.VERSION, plural)
            else:
                result = self.custom.list_namespaced_custom_object(
                    names.GROUP, names.VERSION, self.namespace, plural
                )
        items: list[Body] = result.get("items", [])
        return items

    def create(self, plural: str, body: Body) -> Body:
        with api_errors(plural.rstrip("s"), self.namespace):
            created: Body = self.custom.create_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, plural, body
            )
        return created

    def whoami(self) -> str:
        """The username the API server knows this client as (a SelfSubjectReview)."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        authentication: Any = client.AuthenticationV1Api(self.custom.api_client)
        with api_errors("selfsubjectreview", None):
            answer: Any = authentication.create_self_subject_review(review)
        return str(answer.status.user_info.username)

    def patch(self, plural: str, name: str, patch: Body) -> Body:
        with api_errors(f"{plural.rstrip('s')} {name}", self.namespace):
            patched: Body = self.custom.patch_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, plural, name, patch
            )
        return patched


@contextmanager
def api_errors(what: str, namespace: str | None) -> Iterator[None]:
    where = f" in namespace {namespace}" if namespace else ""
    try:
        yield
    except ApiException as error:
        if error.status == 404 and not _names_an_object(error):
            raise PluginError(NOT_INSTALLED) from None
        if error.status == 404:
            raise PluginError(f"{what} not found{where}") from None
        raise PluginError(f"{what}{where}: {_message(error)}") from None


NOT_INSTALLED = (
    f"mlkube is not installed in this cluster: the API server has no {names.API_VERSION} "
    "resources. Install it with `kubectl apply --server-side -k "
    "<mlkube>/manifests/overlays/production` (docs/install.md)"
)


def _names_an_object(error: ApiException) -> bool:
    """A 404 about one object carries its name; a 404 about a missing resource type does not."""
    try:
        details = json.loads(error.body or "").get("details") or {}
    except (TypeError, ValueError, AttributeError):
        return False
    return bool(details.get("name"))


def _message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{error.status} {error.reason}"


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Connection:
    """Loads the kubeconfig like kubectl and resolves the namespace."""
    try:
        contexts, current = loaders.list_kube_config_contexts(config_file=kubeconfig)
        chosen = current
        if context is not None:
            chosen = next((c for c in contexts if c["name"] == context), None)
            if chosen is None:
                raise PluginError(f"context {context!r} not found in the kubeconfig")
        api = loaders.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, FileNotFoundError) as error:
        raise PluginError(f"cannot load the kubeconfig: {error}") from None
    details = (chosen or {}).get("context", {})
    return Connection(
        custom=client.CustomObjectsApi(api),
        namespace=namespace or details.get("namespace") or "default",
        user=str(details.get("user", "")),
    )
