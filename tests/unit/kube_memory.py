"""An in-memory Kubernetes API shaped like ``controller.kube.KubeApi``, for reconciler tests.

It keeps what the reconcilers rely on from a real API server: resourceVersions that
grow with every write, 409 on a stale resourceVersion precondition and on a create of
an existing name, 404, uids and ownerReferences, ``metadata.generation`` that moves
with ``spec`` only, merge-patched status. Tests can make the next write of a kind fail
with a conflict, and ``sync`` plays the part of the watches, relisting into the cache.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Mapping
from typing import Any

from mlkube.api.resources import Body
from mlkube.controller.children import Controller
from mlkube.controller.kube import ApiError, Rv
from mlkube.controller.settings import OperatorSettings
from mlkube.controller.watches import new_cache

Key = tuple[str, str, str]


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386: maps merge key by key, null deletes, everything else replaces."""
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = merge_patch(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


class MemoryKube:
    """The objects of one fake cluster, with the request log a test can assert on."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self._rv = itertools.count(1)
        self.requests: list[tuple[str, str, str]] = []
        self.conflicts: dict[str, int] = {}  # kind -> status writes still to refuse
        self.logs: dict[tuple[str, str], str] = {}

    @staticmethod
    def _key(kind: str, namespace: str, name: str) -> Key:
        return kind, namespace, name

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(body)

    def _existing(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        found = self.objects.get(self._key(kind, namespace, name))
        if found is None:
            raise ApiError(404, "NotFound", f"{kind} {namespace}/{name} not found")
        return found

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.requests.append(("get", kind, name))
        return copy.deepcopy(self._existing(kind, namespace, name))

    async def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(dict(manifest))
        meta = body["metadata"]
        key = self._key(body["kind"], meta["namespace"], meta["name"])
        self.requests.append(("create", key[0], key[2]))
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f"{key[0]} {key[2]} already exists")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{len(self.objects):02d}Z")
        meta["generation"] = 1
        self.objects[key] = body
        return self._stamp(body)

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        key = self._key(manifest["kind"], meta["namespace"], meta["name"])
        if key not in self.objects:
            return await self.create(manifest)
        self.requests.append(("apply", key[0], key[2]))
        current = self.objects[key]
        if manifest.get("spec") != current.get("spec"):
            current["metadata"]["generation"] += 1
        for field in ("spec", "data", "rules", "subjects", "roleRef"):
            if field in manifest:
                current[field] = copy.deepcopy(manifest[field])
        for field in ("labels", "annotations", "ownerReferences"):
            if field in meta:
                current["metadata"][field] = copy.deepcopy(meta[field])
        return self._stamp(current)

    async def replace(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        current = self._existing(manifest["kind"], meta["namespace"], meta["name"])
        if meta.get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        body = copy.deepcopy(dict(manifest))
        self.objects[self._key(manifest["kind"], meta["namespace"], meta["name"])] = body
        return self._stamp(body)

    async def patch_status(
        self, kind: str, namespace: str, name: str, status: Body, resource_version: Rv = None
    ) -> dict[str, Any]:
        self.requests.append(("patch_status", kind, name))
        current = self._existing(kind, namespace, name)
        if self.conflicts.get(kind):
            self.conflicts[kind] -= 1
            self._stamp(current)  # someone else wrote in between
            raise ApiError(409, "Conflict", "the object has been modified")
        if (
            resource_version is not None
            and resource_version != current["metadata"]["resourceVersion"]
        ):
            raise ApiError(409, "Conflict", "the object has been modified")
        current["status"] = merge_patch(current.get("status") or {}, status)
        return self._stamp(current)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.requests.append(("delete", kind, name))
        self._existing(kind, namespace, name)
        del self.objects[self._key(kind, namespace, name)]

    async def pod_log(self, namespace: str, name: str, tail_lines: int) -> str:
        return self.logs.get((namespace, name), "")

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Equality selectors only (``a=b,c=d``), which is all the operator sends."""
        self.requests.append(("list", "Pod", selector))
        wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
        return [
            copy.deepcopy(body)
            for (kind, ns, _), body in sorted(self.objects.items())
            if kind == "Pod"
            and ns == namespace
            and all((body["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    # What a test does to the cluster, as the other controllers and users would.

    def put(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Creates or overwrites an object as another client would (no precondition)."""
        copied = copy.deepcopy(dict(body))
        meta = copied["metadata"]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", f"2026-01-01T00:01:{len(self.objects):02d}Z")
        self.objects[self._key(copied["kind"], meta["namespace"], meta["name"])] = copied
        return self._stamp(copied)

    def find(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get(self._key(kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(v) for k, v in sorted(self.objects.items()) if k[0] == kind]


WATCHED_KINDS = ("Model", "TrainingJob", "Monitor", "Job", "CronJob", "Deployment", "Pod")


def controller(kube: MemoryKube, settings: OperatorSettings) -> Controller:
    """A Controller over the in-memory API, its cache filled as the watches would."""
    ctl = Controller(kube=kube, cache=new_cache(), settings=settings)
    sync(ctl)
    return ctl


def sync(ctl: Controller) -> None:
    """The watches catching up: every watched object's newest version into the cache."""
    kube = ctl.kube
    assert isinstance(kube, MemoryKube)
    present = set()
    for (kind, namespace, name), body in list(kube.objects.items()):
        if kind in WATCHED_KINDS:
            ctl.cache.store(kind, copy.deepcopy(body))
            present.add((kind, namespace, name))
    for kind in WATCHED_KINDS:
        for body in ctl.cache.all(kind):
            meta = body["metadata"]
            if (kind, meta["namespace"], meta["name"]) not in present:
                ctl.cache.forget(kind, meta["namespace"], meta["name"])
