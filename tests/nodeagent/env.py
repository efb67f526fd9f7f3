"""What a container sees: its command line, environment and downward-API values.

Follows the kubelet: ``envFrom`` first, then ``env`` (later names win), ``$(VAR)``
references expanded in env values, ``command`` and ``args`` (``$$`` escapes), and the
``kubernetes`` Service variables every in-cluster client reads. A container that names no
``command`` runs the image's entry point; every image the agent knows runs ``mlkube``,
which resolves to the console script of the venv the agent was started from.
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path
from typing import Any

from nodeagent.kube import ApiError, Kube, Obj
from nodeagent.network import SERVICE_HOST, SERVICE_PORT

DEFAULT_ENTRYPOINT = ("mlkube",)
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_SUFFIXES = {
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}  # fmt: skip


class ConfigError(RuntimeError):
    """A reference the pod makes cannot be resolved (CreateContainerConfigError)."""


def expand(text: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REFERENCE.sub(substitute, text)


def parse_quantity(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    if not match or match.group(2) not in _SUFFIXES:
        raise ConfigError(f"cannot parse quantity {text!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


def field_value(pod: Obj, path: str, host_ip: str, pod_ip: str) -> str:
    meta = pod["metadata"]
    mapped = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if mapped:
        return str(meta.get(mapped.group(1), {}).get(mapped.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted(meta.get(path.split(".")[1], {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    values = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path not in values:
        raise ConfigError(f"unsupported fieldRef {path}")
    return str(values[path])


def resource_value(pod: Obj, ref: dict[str, Any], container_name: str | None) -> str:
    name = ref.get("containerName") or container_name
    container = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    section, _, kind = ref["resource"].partition(".")
    raw = container.get("resources", {}).get(section, {}).get(kind)
    if raw is None:
        raw = "1" if kind == "cpu" else str(8 * 2**30)
    divisor = parse_quantity(ref.get("divisor", "1"))
    return str(math.ceil(parse_quantity(raw) / divisor))


class EnvResolver:
    """Looks up ConfigMaps and Secrets of the pod's namespace (once per container start)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace

    def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        resource = "configmaps" if kind == "configMap" else "secrets"
        try:
            obj = self._kube.get(f"/api/v1/namespaces/{self._namespace}/{resource}/{name}")
        except ApiError as error:
            if error.status == 404 and optional:
                return None
            raise ConfigError(f"{kind} {name!r} not found") from None
        if kind == "configMap":
            return dict(obj.get("data") or {})
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    def environment(
        self, pod: Obj, container: Obj, venv_bin: Path, host_ip: str, pod_ip: str
    ) -> dict[str, str]:
        env = {
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME": pod["metadata"]["name"],
            "HOME": "/",
            "KUBERNETES_SERVICE_HOST": SERVICE_HOST,
            "KUBERNETES_SERVICE_PORT": str(SERVICE_PORT),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(SERVICE_PORT),
            "KUBERNETES_PORT": f"tcp://{SERVICE_HOST}:{SERVICE_PORT}",
            "KUBERNETES_PORT_443_TCP": f"tcp://{SERVICE_HOST}:{SERVICE_PORT}",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": str(SERVICE_PORT),
            "KUBERNETES_PORT_443_TCP_ADDR": SERVICE_HOST,
        }
        for source in container.get("envFrom", []):
            kind = "configMap" if "configMapRef" in source else "secret"
            ref = source[f"{kind}Ref"]
            values = self.data(kind, ref["name"], ref.get("optional", False)) or {}
            prefix = source.get("prefix", "")
            env.update({prefix + k: v for k, v in values.items()})
        for item in container.get("env", []):
            if "value" in item or "valueFrom" not in item:
                env[item["name"]] = expand(item.get("value", ""), env)
                continue
            value = self._value_from(pod, container, item["valueFrom"], host_ip, pod_ip)
            if value is not None:
                env[item["name"]] = value
        return env

    def _value_from(
        self, pod: Obj, container: Obj, source: Obj, host_ip: str, pod_ip: str
    ) -> str | None:
        if "fieldRef" in source:
            return field_value(pod, source["fieldRef"]["fieldPath"], host_ip, pod_ip)
        if "resourceFieldRef" in source:
            return resource_value(pod, source["resourceFieldRef"], container["name"])
        kind = "configMap" if "configMapKeyRef" in source else "secret"
        ref = source[f"{kind}KeyRef"]
        values = self.data(kind, ref["name"], ref.get("optional", False))
        if values is None or ref["key"] not in values:
            if ref.get("optional", False):
                return None
            raise ConfigError(f"key {ref['key']!r} not found in {kind} {ref['name']!r}")
        return values[ref["key"]]


def command_line(container: Obj, env: dict[str, str]) -> list[str]:
    command = container.get("command") or list(DEFAULT_ENTRYPOINT)
    args = container.get("args") or []
    return [expand(part, env) for part in (*command, *args)]
