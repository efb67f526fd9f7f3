"""A small async Kubernetes API client on aiohttp, using the credentials kopf logged in with.

kopf already depends on aiohttp, so this costs no extra import (the official client
loads ~1,000 model classes per process) and never blocks the event loop the watches
run on. It does only what the reconcilers need: get, create, server-side apply, merge
patch (optionally with a resourceVersion precondition), delete, pod logs.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import aiohttp

from mlkube.api.resources import Body

Rv = str | None  # a resourceVersion precondition, or none

FIELD_MANAGER: Final = "mlkube-operator"
# Names the operator's own requests in the API server's audit log.
USER_AGENT: Final = "mlkube-operator/0.1"

# kind -> (apiVersion, plural) of everything the operator reads or writes.
RESOURCES: Final[dict[str, tuple[str, str]]] = {
    "Model": ("mlkube.io/v1alpha1", "models"),
    "TrainingJob": ("mlkube.io/v1alpha1", "trainingjobs"),
    "Monitor": ("mlkube.io/v1alpha1", "monitors"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Pod": ("v1", "pods"),
    "Event": ("v1", "events"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
    "Lease": ("coordination.k8s.io/v1", "leases"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
}


class ApiError(Exception):
    """A non-2xx answer; ``status`` 404/409 are the ones reconcilers handle."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def path_of(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    api_version, plural = RESOURCES[kind]
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{root}/namespaces/{namespace}/{plural}"
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return path


class KubeApi(Protocol):
    """What the reconcilers call: the real client below, or an in-memory API in unit tests."""

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    async def replace(self, manifest: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: Body, resource_version: Rv = None
    ) -> dict[str, Any]: ...

    async def delete(self, kind: str, namespace: str, name: str) -> None: ...

    async def pod_log(self, namespace: str, name: str, tail_lines: int) -> str: ...

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...


class Kube:
    """One HTTP session to the API server; create with :meth:`from_connection`."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext | bool,
        headers: Mapping[str, str],
        limit: int = 32,
    ) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._headers = {"User-Agent": USER_AGENT, **headers}
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    @classmethod
    def from_connection(cls, info: Any) -> Kube:
        """From a ``kopf.ConnectionInfo`` (kubeconfig or in-cluster service account)."""
        context: ssl.SSLContext | bool
        if info.insecure:
            context = False
        else:
            cadata = _text(info.ca_data)
            context = ssl.create_default_context(
                cafile=str(info.ca_path) if info.ca_path else None, cadata=cadata
            )
            cert = _file(info.certificate_path, info.certificate_data)
            key = _file(info.private_key_path, info.private_key_data)
            if cert and key:
                context.load_cert_chain(cert, key)
        headers = {}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            raw = f"{info.username}:{info.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return cls(info.server, context, headers)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=self._ssl),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        raw: bool = False,
    ) -> Any:
        self.requests += 1
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self._client().request(
            method, self.server + path, data=data, headers=headers, params=params
        ) as response:
            content = await response.read()
            if response.status >= 400:
                text = content.decode(errors="replace")
                try:
                    payload = json.loads(content)
                except ValueError:
                    raise ApiError(response.status, "", text[:500]) from None
                if not isinstance(payload, dict):
                    payload = {}
                raise ApiError(
                    response.status,
                    str(payload.get("reason", "")),
                    str(payload.get("message", text)),
                )
            if raw:
                return content.decode(errors="replace")
            return json.loads(content) if content else {}

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", path_of(kind, namespace, name))
        return result

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        result: dict[str, Any] = await self.request(
            "POST", path_of(manifest["kind"], meta["namespace"]), manifest
        )
        return result

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager: create or converge in one call."""
        meta = manifest["metadata"]
        result: dict[str, Any] = await self.request(
            "PATCH",
            path_of(manifest["kind"], meta["namespace"], meta["name"]),
            manifest,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
        )
        return result

    async def replace(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """PUT: fails with 409 unless ``metadata.resourceVersion`` is still current."""
        meta = manifest["metadata"]
        result: dict[str, Any] = await self.request(
            "PUT", path_of(manifest["kind"], meta["namespace"], meta["name"]), manifest
        )
        return result

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: Body, resource_version: Rv = None
    ) -> dict[str, Any]:
        """Merge-patches ``status``; with ``resource_version``, fails with 409 if stale."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        result: dict[str, Any] = await self.request(
            "PATCH",
            path_of(kind, namespace, name, "status"),
            body,
            content_type="application/merge-patch+json",
        )
        return result

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self.request(
            "DELETE", path_of(kind, namespace, name), {"propagationPolicy": "Background"}
        )

    async def pod_log(self, namespace: str, name: str, tail_lines: int) -> str:
        text: str = await self.request(
            "GET",
            path_of("Pod", namespace, name, "log"),
            params={"tailLines": str(tail_lines)},
            raw=True,
        )
        return text

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods matching a label selector (a canary's analysis reads their IPs)."""
        result = await self.request(
            "GET", path_of("Pod", namespace), params={"labelSelector": selector}
        )
        return list(result.get("items") or [])


def _text(data: str | bytes | None) -> str | None:
    if not data:
        return None
    raw = data.encode() if isinstance(data, str) else data
    try:
        return base64.b64decode(raw, validate=True).decode()
    except ValueError:
        return raw.decode()


def _file(path: Any, data: str | bytes | None) -> str | None:
    """ssl wants files for client certificates; inline kubeconfig data goes to /tmp."""
    if path:
        return str(path)
    text = _text(data)
    if text is None:
        return None
    handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        handle.write(text)
    Path(handle.name).chmod(0o600)
    return handle.name
