"""Pod volumes as host directories the shim bind-mounts into each container.

``emptyDir`` is a directory under the pod's state (mode 0777, as the kubelet makes it);
a ``persistentVolumeClaim`` is the directory of the PersistentVolume the agent provisioned
for it; ConfigMap, Secret, downward-API and projected volumes are files written once at
pod start, the ServiceAccount token among them coming from the TokenRequest API, bound to
the pod, for the audience the pod asks (the API server's by default).
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

from nodeagent.env import ConfigError, EnvResolver, field_value, resource_value
from nodeagent.kube import ApiError, Kube, Obj

DEFAULT_MODE = 0o644


def _write(directory: Path, relative: str, content: str | bytes, mode: int) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)


class VolumeBuilder:
    """Materializes one pod's volumes under ``<pod dir>/volumes``."""

    def __init__(self, kube: Kube, pod: Obj, pod_dir: Path, host_ip: str, pod_ip: str) -> None:
        self._kube = kube
        self._pod = pod
        self._namespace = pod["metadata"]["namespace"]
        self._root = pod_dir / "volumes"
        self._resolver = EnvResolver(kube, self._namespace)
        self._host_ip = host_ip
        self._pod_ip = pod_ip

    def build(self) -> dict[str, Path]:
        paths = {}
        for volume in self._pod["spec"].get("volumes", []):
            paths[volume["name"]] = self._build_one(volume)
        return paths

    def _build_one(self, volume: Obj) -> Path:
        name: str = volume["name"]
        target = self._root / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            return target
        if "persistentVolumeClaim" in volume:
            return self._claim_path(volume["persistentVolumeClaim"]["claimName"])
        if "hostPath" in volume:
            return Path(str(volume["hostPath"]["path"]))
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o755)
        if "configMap" in volume or "secret" in volume:
            self._write_keyed(target, volume, volume.get("configMap") or volume["secret"])
        elif "downwardAPI" in volume:
            self._write_downward(target, volume["downwardAPI"].get("items", []), volume)
        elif "projected" in volume:
            mode = volume["projected"].get("defaultMode", DEFAULT_MODE)
            for source in volume["projected"].get("sources", []):
                self._write_projection(target, source, mode)
        else:
            raise ConfigError(f"volume {name}: unsupported type {sorted(volume)}")
        return target

    def _claim_path(self, claim: str) -> Path:
        pvc = self._kube.get(f"/api/v1/namespaces/{self._namespace}/persistentvolumeclaims/{claim}")
        volume_name = pvc["spec"].get("volumeName")
        if not volume_name:
            raise ConfigError(f"claim {claim} is not bound")
        pv = self._kube.get(f"/api/v1/persistentvolumes/{volume_name}")
        source = pv["spec"].get("hostPath") or pv["spec"].get("local")
        if not source:
            raise ConfigError(f"volume {volume_name} is neither hostPath nor local")
        return Path(str(source["path"]))

    def _write_keyed(self, target: Path, volume: Obj, source: Obj, mode: int | None = None) -> None:
        kind = "configMap" if ("configMap" in volume) else "secret"
        name = source.get("name") or source.get("secretName", "")
        optional = source.get("optional", False)
        data = self._resolver.data(kind, name, optional) or {}
        if kind == "configMap":
            cm = self._kube.find(f"/api/v1/namespaces/{self._namespace}/configmaps/{name}")
            binary = (cm or {}).get("binaryData") or {}
        else:
            binary = {}
        default = source.get("defaultMode", mode if mode is not None else DEFAULT_MODE)
        contents: dict[str, str | bytes] = dict(data)
        contents.update({k: base64.b64decode(v) for k, v in binary.items()})
        items = source.get("items")
        if items is None:
            for key, value in contents.items():
                _write(target, key, value, default)
            return
        for item in items:
            if item["key"] not in contents:
                if optional:
                    continue
                raise ConfigError(f"key {item['key']!r} not in {kind} {name!r}")
            _write(target, item["path"], contents[item["key"]], item.get("mode", default))

    def _write_downward(self, target: Path, items: list[Obj], volume: Obj) -> None:
        mode = volume.get("downwardAPI", {}).get("defaultMode", DEFAULT_MODE)
        for item in items:
            _write(target, item["path"], self._downward_value(item), item.get("mode", mode))

    def _downward_value(self, item: Obj) -> str:
        if "fieldRef" in item:
            return field_value(
                self._pod, item["fieldRef"]["fieldPath"], self._host_ip, self._pod_ip
            )
        return resource_value(self._pod, item["resourceFieldRef"], None)

    def _write_projection(self, target: Path, source: Obj, mode: int) -> None:
        if "serviceAccountToken" in source:
            spec = source["serviceAccountToken"]
            _write(target, spec["path"], self.token(spec), mode)
        elif "configMap" in source:
            self._write_keyed(target, source, source["configMap"], mode)
        elif "secret" in source:
            self._write_keyed(target, source, source["secret"], mode)
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items", []):
                _write(target, item["path"], self._downward_value(item), item.get("mode", mode))
        else:
            raise ConfigError(f"unsupported projected source {sorted(source)}")

    def token(self, spec: dict[str, Any]) -> str:
        meta = self._pod["metadata"]
        account = self._pod["spec"].get("serviceAccountName", "default")
        audience = spec.get("audience")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": spec.get("expirationSeconds", 3607),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            answer = self._kube.create(
                f"/api/v1/namespaces/{self._namespace}/serviceaccounts/{account}/token", request
            )
        except ApiError as error:
            raise ConfigError(f"token for serviceaccount {account}: {error}") from None
        return str(answer["status"]["token"])


def remove_pod_volumes(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir / "volumes", ignore_errors=True)
