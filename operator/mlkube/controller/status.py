"""Status helpers shared by the reconcilers: diffing, writing, reading a Job's own pods."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Final

from mlkube.api.resources import Body
from mlkube.api.status import PodPhase, Reason
from mlkube.api.summary import parse_error
from mlkube.controller.children import Controller, owned_by
from mlkube.controller.kube import ApiError
from mlkube.controller.spec import (
    effective_resources,
    effective_training,
    name_of,
    namespace_of,
    status_of,
)


def changed_fields(
    current: Mapping[str, Any], desired: Mapping[str, Any], replace: Collection[str] = ()
) -> dict[str, Any]:
    """The top-level status fields whose value differs (a merge patch of them).

    A merge patch merges nested objects; the objects named in ``replace`` are replaced
    instead: their keys the desired value lacks are sent as null, which deletes them.
    """
    patch = {k: v for k, v in desired.items() if current.get(k) != v}
    for key in replace:
        old, new = current.get(key), patch.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            patch[key] = {**{k: None for k in old if k not in new}, **new}
    return patch


async def write_status(
    ctl: Controller,
    kind: str,
    body: Body,
    desired: Mapping[str, Any],
    *,
    precondition: bool,
    replace: Collection[str] = (),
) -> bool:
    """Merge-patches the changed status fields; False when a stale cache caused a conflict.

    On a conflict the fresh object is fetched into the cache, so the caller's retry sees it.
    """
    patch = changed_fields(body.get("status") or {}, desired, replace)
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


CONFIG_ERRORS: Final = frozenset({"CreateContainerConfigError", "CreateContainerError"})


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


def config_error(pods: list[Body]) -> str | None:
    """Why a pod cannot start its containers, when the kubelet says it is the pod's own
    configuration: a missing Secret or key (the kubelet names the Secret and the key, never
    a value), a bad volume. ``None`` while the pods are merely waiting for their turn."""
    for pod in reversed(pods):
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in CONFIG_ERRORS:
                detail = str(waiting.get("message") or waiting["reason"])[:300]
                return f"pod {pod['metadata']['name']} cannot start: {detail}"
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


async def failure_message(
    ctl: Controller,
    job: Body,
    failed: Mapping[str, Any],
    attempts: int,
    *,
    memory_limit: str | None = None,
) -> str:
    """Exit code, pod name, the trainer's error and the last log lines, in one message
    (first, when the kernel killed the trainer, the memory limit it went over)."""
    namespace, job_name = namespace_of(job), name_of(job)
    pods = _failed_pods(ctl, job)
    parts = [
        f"Job {job_name} failed ({failed.get('reason') or 'Failed'}: "
        f"{failed.get('message') or 'no detail'}) after {attempts} attempt(s)"
    ]
    if pods:
        pod = pods[-1]
        pod_name = str(pod["metadata"]["name"])
        terminated = terminated_state(pod) or {}
        if terminated.get("reason") == Reason.OOM_KILLED:
            parts.insert(0, _oom_sentence(memory_limit))
        parts.append(f"pod {pod_name} exited with code {terminated.get('exitCode', 'unknown')}")
        message = str(terminated.get("message") or "").strip()
        error = parse_error(message)
        if error is not None:
            parts.append(f"error: {error['error']}")
        elif message:
            parts.append("termination message:\n" + message[-2000:])
        parts.append(await _log_tail(ctl, namespace, pod_name))
    else:
        parts.append("no failed pod was found (it may have been deleted)")
    return "\n".join(parts)


def trainer_memory_limit(ctl: Controller, model: Body, tj: Body) -> str | None:
    """The memory limit the run's trainer had: its spec's, else the operator's default."""
    requested = effective_training(model, tj).get("resources")
    limits = effective_resources(requested, ctl.settings.trainer_resources)["limits"]
    return limits.get("memory")


def failure_reason(ctl: Controller, job: Body) -> Reason:
    """``OOMKilled`` when the kernel killed the last failed trainer, else ``TrainingFailed``."""
    pods = _failed_pods(ctl, job)
    terminated = (terminated_state(pods[-1]) if pods else None) or {}
    if terminated.get("reason") == Reason.OOM_KILLED:
        return Reason.OOM_KILLED
    return Reason.TRAINING_FAILED


def _failed_pods(ctl: Controller, job: Body) -> list[Body]:
    return [p for p in pods_of_job(ctl, job) if status_of(p).get("phase") == PodPhase.FAILED]


def _oom_sentence(limit: str | None) -> str:
    """What the user changes: the memory limit the trainer went over, by its spec field."""
    return (
        f"the trainer was OOMKilled: it needed more memory than its limit ({limit or 'unset'}); "
        "raise spec.training.resources.limits.memory"
    )


async def _log_tail(ctl: Controller, namespace: str, pod: str) -> str:
    lines = ctl.settings.log_tail_lines
    if lines == 0:
        return ""
    try:
        text = await ctl.kube.pod_log(namespace, pod, lines)
    except (ApiError, OSError) as error:
        detail = error.message if isinstance(error, ApiError) else str(error)
        return f"log tail unavailable ({detail.strip()[:200]})"
    return f"last {lines} log lines:\n" + text.strip()[-3000:]
