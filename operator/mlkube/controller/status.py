"""Status helpers shared by the reconcilers: diffing, writing, reading trainer pods."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mlkube.controller.informer import Body
from mlkube.controller.kube import ApiError
from mlkube.controller.reconcile import Controller


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


def parse_summary(message: str) -> dict[str, Any] | None:
    """The trainer's JSON summary from a termination message, or None if it is not one."""
    text = message.strip()
    if not text:
        return None
    try:
        summary = json.loads(text)
    except ValueError:
        start = text.rfind("\n{")
        if start < 0:
            return None
        try:
            summary = json.loads(text[start + 1 :])
        except ValueError:
            return None
    return summary if isinstance(summary, dict) else None


def pods_of_job(ctl: Controller, namespace: str, job: str) -> list[Body]:
    """The Job's pods from the cache, oldest first."""
    pods = ctl.cache.by_index("Pod", namespace, job)
    return sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
