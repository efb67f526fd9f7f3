"""Status helpers shared by the reconcilers: diffing, writing, reading a Job's own pods."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlkube.api.resources import Body
from mlkube.controller.children import Controller, owned_by
from mlkube.controller.kube import ApiError


def changed_fields(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields whose value differs (a merge patch of them)."""
    return {k: v for k, v in desired.items() if current.get(k) != v}


async def write_status(
    ctl: Controller, kind: str, body: Body, desired: Mapping[str, Any], *, precondition: bool
) -> bool:
    """Merge-patches the changed status fields; False when a stale cache caused a conflict.

    On a conflict the fresh object is fetched into the cache, so the caller's retry sees it.
    """
    patch = changed_fields(body.get("status") or {}, desired)
    if not patch:
        return True
    meta = body["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    try:
        written = await ctl.kube.patch_status(
            kind,
            namespace,
            name,
            patch,
            resource_version=str(meta["resourceVersion"]) if precondition else None,
        )
    except ApiError as error:
        if error.conflict:
            ctl.cache.store(kind, await ctl.kube.get(kind, namespace, name))
            return False
        if error.not_found:
            ctl.cache.forget(kind, namespace, name)
            return True
        raise
    ctl.cache.store(kind, written)
    return True


def terminated_state(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The trainer container's terminated state, if it has ended."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
        last = (status.get("lastState") or {}).get("terminated")
        if last:
            return dict(last)
    return None


def pods_of_job(ctl: Controller, job: Body) -> list[Body]:
    """The Job's own pods from the cache, oldest first.

    Only pods whose ownerReference carries the Job's uid: a pod that merely copies the
    trainer's labels cannot forge a run's score or digest.
    """
    meta = job["metadata"]
    found = ctl.cache.by_index("Pod", str(meta["namespace"]), str(meta["name"]))
    pods = [p for p in found if owned_by(p, str(meta.get("uid")))]
    return sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
