"""Retrain when the data changes (``spec.training.retrainWhen: DataChanged``).

Each schedule firing first runs a check Job ``<model>-c<firing>``: the trainer's pod,
owned by the Model, running ``mlkube train --check-data <digest>`` with the digest of
the data the last trained version read (``lineage.data.sha256``). The pod reads the
data as training would (same mounts, credentials and download guards) and leaves its
digest and whether it moved in its termination message. When it moved the Model gets
TrainingJob ``<model>-d<firing>`` with trigger ``data-change``; when not, nothing runs.
The check's state is ``status.dataCheck``, so a restarted operator resumes it and reads
each check's result once. A Model none of whose versions recorded a data digest trains
at the firing (there is nothing to compare with).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlkube.api import names
from mlkube.api.conditions import now_iso
from mlkube.api.datacheck import parse_data_check
from mlkube.api.resources import Body, training_job_resource
from mlkube.api.status import Decision, PodPhase, Trigger
from mlkube.controller.builders import build_data_check_job
from mlkube.controller.children import Controller, ensure_child
from mlkube.controller.spec import name_of, namespace_of, status_of
from mlkube.controller.status import pods_of_job, terminated_state


def last_data_digest(status: Mapping[str, Any]) -> str | None:
    """The data digest of the newest trained (not failed) version that recorded one."""
    for entry in reversed(list(status.get("versions") or [])):
        digest = ((entry.get("lineage") or {}).get("data") or {}).get("sha256")
        if entry.get("decision") != Decision.FAILED and digest:
            return str(digest)
    return None


async def start_data_check(
    ctl: Controller, model: Body, status: dict[str, Any], fired: datetime
) -> Body | None:
    """A firing: the check Job (or, with nothing to compare with, the run at once)."""
    expected = last_data_digest(status)
    if expected is None:
        return await _start_run(ctl, model, fired, "no trained version records its data digest")
    name = names.data_check_job_name(name_of(model), fired)
    await ensure_child(
        ctl, build_data_check_job(model, name, expected, ctl.settings), updatable=False
    )
    status["dataCheck"] = {"job": name, "firedAt": now_iso(fired), "expectedSha256": expected}
    return None


async def finish_data_check(ctl: Controller, model: Body, status: dict[str, Any]) -> Body | None:
    """Reads an ended check once: a run when the data moved; returns the run."""
    check = dict(status.get("dataCheck") or {})
    if not check.get("job") or check.get("checkedAt"):
        return None
    job = ctl.cache.get("Job", namespace_of(model), str(check["job"]))
    if job is None:
        return None
    conditions = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []}
    if (conditions.get("Failed") or {}).get("status") == "True":
        check["message"] = f"the check Job failed: {conditions['Failed'].get('message') or ''}"
    elif (conditions.get("Complete") or {}).get("status") != "True":
        return None
    else:
        pods = [p for p in pods_of_job(ctl, job) if status_of(p).get("phase") == PodPhase.SUCCEEDED]
        if not pods:
            return None  # the pod watch has not caught up yet
        result = parse_data_check(str((terminated_state(pods[-1]) or {}).get("message") or ""))
        if result is None:
            check["message"] = "the check left no readable result in its termination message"
        else:
            check["sha256"], check["changed"] = result["dataSha256"], result["changed"]
    check["checkedAt"] = now_iso()
    status["dataCheck"] = check
    if not check.get("changed"):
        return None
    fired = datetime.fromisoformat(str(check["firedAt"]).replace("Z", "+00:00"))
    reason = (
        f"data changed: sha256 {check['sha256'][:12]} "
        f"(last trained on {check['expectedSha256'][:12]})"
    )
    run = await _start_run(ctl, model, fired, reason)
    check["trainingJob"] = names.data_change_training_job_name(name_of(model), fired)
    return run


async def _start_run(ctl: Controller, model: Body, fired: datetime, reason: str) -> Body | None:
    desired = training_job_resource(
        model,
        names.data_change_training_job_name(name_of(model), fired),
        Trigger.DATA_CHANGE,
        reason,
    )
    await ensure_child(ctl, desired, updatable=False)
    meta = desired["metadata"]
    return ctl.cache.get("TrainingJob", meta["namespace"], meta["name"])
