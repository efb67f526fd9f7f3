"""Desired versus existing: create / update / unchanged / delete-if-owned, and Events.

Only objects carrying our ownerReference are ever updated or deleted; a foreign object
with a child's name is reported (``NotOwned``) and left alone. Children the operator
watches are compared through the cache; the others through the hash of what this process
last applied, so a steady state costs no requests and a restart costs one per child.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from mlkube.api.conditions import now_iso
from mlkube.controller.builders.common import SPEC_HASH, with_spec_hash
from mlkube.controller.informer import Cache, WorkQueue
from mlkube.controller.kube import ApiError, KubeApi
from mlkube.controller.settings import OperatorSettings

log = logging.getLogger("mlkube.controller")

# Kinds whose every change reaches the cache through a watch.
WATCHED: Final = frozenset({"Model", "TrainingJob", "Monitor", "Job", "Deployment", "CronJob"})


class Outcome(Enum):
    CREATED = "Created"
    UPDATED = "Updated"
    UNCHANGED = "Unchanged"
    DELETED = "Deleted"
    ABSENT = "Absent"
    NOT_OWNED = "NotOwned"


@dataclass
class Controller:
    """What every reconciler needs, built once at start and passed down."""

    kube: KubeApi
    cache: Cache
    settings: OperatorSettings
    queue: WorkQueue | None = None
    applied: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # Children being created right now: another reconcile waits for the watch event
    # instead of racing to create the same object (and paying a conflict and a read).
    creating: set[tuple[str, str, str]] = field(default_factory=set)
    # When this process first saw a Model's edited spec (by digest): edits are debounced.
    first_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def enqueue(self, kind: str, namespace: str, name: str, after: float = 0.0) -> None:
        if self.queue is None:
            return
        if after > 0:
            self.queue.add_after((kind, namespace, name), after)
        else:
            self.queue.add((kind, namespace, name))


def _key(manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = manifest["metadata"]
    return (str(manifest["kind"]), str(meta["namespace"]), str(meta["name"]))


def _hash(body: Mapping[str, Any] | None) -> str | None:
    if body is None:
        return None
    return ((body.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH)


def owned_by(body: Mapping[str, Any], owner_uid: str) -> bool:
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid for ref in refs)


async def ensure_child(
    ctl: Controller, desired: dict[str, Any], *, updatable: bool = True
) -> tuple[Outcome, dict[str, Any] | None]:
    """Makes ``desired`` exist; returns the outcome and the object when it was written."""
    manifest = with_spec_hash(desired)
    kind, namespace, name = key = _key(manifest)
    wanted = _hash(manifest)
    owner_uid = manifest["metadata"]["ownerReferences"][0]["uid"]
    watched = kind in WATCHED
    existing = ctl.cache.get(kind, namespace, name) if watched else None
    known = _hash(existing) if watched else ctl.applied.get(key)
    if known == wanted or (existing is not None and not updatable):
        return Outcome.UNCHANGED, None
    if existing is not None and not owned_by(existing, owner_uid):
        return Outcome.NOT_OWNED, None
    if existing is None and known is None:
        if key in ctl.creating:
            return Outcome.UNCHANGED, None
        ctl.creating.add(key)
        try:
            created = await ctl.kube.create(manifest)
        except ApiError as error:
            if not error.conflict:
                raise
        else:
            _remember(ctl, kind, key, created, wanted)
            log.info("created %s %s/%s", kind, namespace, name)
            return Outcome.CREATED, created
        finally:
            ctl.creating.discard(key)
        existing = await ctl.kube.get(kind, namespace, name)
        if not owned_by(existing, owner_uid):
            return Outcome.NOT_OWNED, None
        if _hash(existing) == wanted or not updatable:
            _remember(ctl, kind, key, existing, _hash(existing))
            return Outcome.UNCHANGED, None
    applied = await ctl.kube.apply(manifest)
    _remember(ctl, kind, key, applied, wanted)
    log.info("updated %s %s/%s", kind, namespace, name)
    return Outcome.UPDATED, applied


def _remember(
    ctl: Controller,
    kind: str,
    key: tuple[str, str, str],
    body: Mapping[str, Any],
    digest: str | None,
) -> None:
    if kind in WATCHED:
        ctl.cache.store(kind, body)
    elif digest is not None:
        ctl.applied[key] = digest


async def delete_if_owned(
    ctl: Controller, kind: str, namespace: str, name: str, owner_uid: str
) -> Outcome:
    """Deletes a child that is no longer desired, if it is ours; remembers it is gone."""
    key = (kind, namespace, name)
    if ctl.applied.get(key) == "":
        return Outcome.ABSENT
    try:
        existing = await ctl.kube.get(kind, namespace, name)
    except ApiError as error:
        if not error.not_found:
            raise
        ctl.applied[key] = ""
        return Outcome.ABSENT
    if not owned_by(existing, owner_uid):
        return Outcome.NOT_OWNED
    try:
        await ctl.kube.delete(kind, namespace, name)
    except ApiError as error:
        if not error.not_found:
            raise
    ctl.applied[key] = ""
    log.info("deleted %s %s/%s", kind, namespace, name)
    return Outcome.DELETED


async def post_event(
    ctl: Controller,
    obj: Mapping[str, Any],
    kind: str,
    reason: str,
    message: str,
    *,
    warning: bool = False,
) -> None:
    """A core/v1 Event on ``obj``, shown by ``kubectl describe``; failures only logged."""
    meta = obj["metadata"]
    namespace = str(meta.get("namespace") or "default")
    now = now_iso()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": kind,
            "name": meta["name"],
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": "mlkube-operator"},
        "reportingComponent": "mlkube-operator",
    }
    try:
        await ctl.kube.create(event)
    except (ApiError, OSError) as error:
        log.warning("could not post event %s on %s/%s: %s", reason, namespace, meta["name"], error)
