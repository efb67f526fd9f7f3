"""A small JSON client for the Kubernetes API, enough for a kubelet's part.

The agent talks to the API with the admin kubeconfig the harness writes (client
certificate files). It uses ``urllib`` rather than the ``kubernetes`` package so every
request is plain JSON in and out, each call opens its own connection (safe from the
agent's worker threads), and API errors surface as :class:`ApiError` with the status.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]


class ApiError(RuntimeError):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Kube:
    """Requests against one API server, authenticated as the kubeconfig's current user."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context_name = config["current-context"]
        context = next(c for c in config["contexts"] if c["name"] == context_name)["context"]
        cluster = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]
        user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
        self.server: str = cluster["server"].rstrip("/")
        self._tmp = tempfile.TemporaryDirectory(prefix="nodeagent-kube-")
        self.ca_file = self._material(cluster, "certificate-authority")
        self.ssl = ssl.create_default_context(cafile=self.ca_file)
        self.ssl.load_cert_chain(
            self._material(user, "client-certificate"), self._material(user, "client-key")
        )

    def _material(self, section: dict[str, str], key: str) -> str:
        if key in section:
            return section[key]
        path = Path(self._tmp.name) / key
        path.write_bytes(base64.b64decode(section[f"{key}-data"]))
        return str(path)

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.server).port or 443

    def request(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Obj:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                text = json.loads(text).get("message", text)
            raise ApiError(error.code, text) from None
        return json.loads(payload) if payload else {}

    def get(self, path: str, **query: str) -> Obj:
        return self.request("GET", path, query=query or None)

    def find(self, path: str) -> Obj | None:
        """GET that answers None for a missing object."""
        try:
            return self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Obj | None = None) -> None:
        try:
            self.request("DELETE", path, body)
        except ApiError as error:
            if error.status != 404:
                raise

    def close(self) -> None:
        self._tmp.cleanup()
