"""The search stage of a TrainingJob: its trials Job, then the select Job.

Everything a search knows lives in its two Jobs (names fixed by the TrainingJob's) and
in the store, never in the operator: the trial counts and the best so far are read
again from the trials Job's pods on every reconcile, and the select Job is made once
the trials Job has ended, whatever the operator did in between. A restarted operator
(kill -9 included) finds both Jobs by name and starts neither twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from mlkube.api import names
from mlkube.api.resources import Body
from mlkube.api.search import LOWER_IS_BETTER, search_trial_count
from mlkube.api.status import PodPhase, TrialCounts, TrialResult, TrialStatus
from mlkube.api.summary import parse_trial, trial_row
from mlkube.controller.builders import build_select_job
from mlkube.controller.children import Controller, ensure_child
from mlkube.controller.spec import effective_training, namespace_of, status_of
from mlkube.controller.status import pods_of_job, terminated_state

INDEX_ANNOTATION: Final = "batch.kubernetes.io/job-completion-index"
# Reasons a trials Job fails for the whole search (bad input, out of time), not because
# some of its indexes did: those go to the select step like a complete Job.
_SEARCH_OVER: Final = frozenset({"PodFailurePolicy", "DeadlineExceeded", "BackoffLimitExceeded"})


@dataclass(frozen=True)
class SearchStage:
    """The Job whose outcome the TrainingJob reports now, and the trials' status."""

    job: Body | None
    job_name: str
    status: dict[str, Any]


def search_of(model: Body, tj: Body) -> Mapping[str, Any] | None:
    search = effective_training(model, tj).get("search")
    return search if search else None


async def search_stage(
    ctl: Controller, tj: Body, model: Body, trials_job: Body | None, version: int
) -> SearchStage:
    """The trials Job while it runs (or fails the search); the select Job once it ended."""
    search = search_of(model, tj) or {}
    trials_name = names.job_name(str(tj["metadata"]["name"]))
    if trials_job is None:
        return SearchStage(None, trials_name, {})
    status = trials_status(ctl, trials_job, search_trial_count(search))
    ended = _ended(trials_job)
    if ended is None or ended in _SEARCH_OVER:
        return SearchStage(trials_job, trials_name, status)
    select_name = names.select_job_name(str(tj["metadata"]["name"]))
    select = ctl.cache.get("Job", namespace_of(tj), select_name)
    if select is None:
        _, select = await ensure_child(
            ctl, build_select_job(model, tj, version, ctl.settings), updatable=False
        )
    return SearchStage(select, select_name, status)


def _ended(job: Body) -> str | None:
    """``Complete``, or the reason of the ``Failed`` condition, or None while running."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Complete"
        if condition.get("type") == "Failed":
            return str(condition.get("reason") or "Failed")
    return None


def trials_status(ctl: Controller, job: Body, total: int) -> dict[str, Any]:
    """Counts, best so far and the table, from the trials Job's pods and failed indexes."""
    results: dict[int, TrialResult] = {}
    for pod in pods_of_job(ctl, job):
        if status_of(pod).get("phase") != PodPhase.SUCCEEDED:
            continue
        result = parse_trial(str((terminated_state(pod) or {}).get("message") or ""))
        if result is not None and _index_of(pod) == result["trial"]:
            results[result["trial"]] = result
    failed_indexes = parse_indexes(str((job.get("status") or {}).get("failedIndexes") or ""))
    succeeded = sum(r["status"] == TrialStatus.COMPLETED for r in results.values())
    failed = len(results) - succeeded + len(failed_indexes - set(results))
    counts: TrialCounts = {"total": total, "succeeded": succeeded, "failed": failed}
    status: dict[str, Any] = {
        "trials": counts,
        "trialResults": [trial_row(results[k]) for k in sorted(results)],
    }
    best = best_so_far(list(results.values()))
    if best is not None:
        status["bestTrial"] = best["trial"]
        status["bestScore"] = best["score"]
    return status


def _index_of(pod: Body) -> int | None:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(INDEX_ANNOTATION)
    return int(raw) if raw is not None and str(raw).isdigit() else None


def best_so_far(results: list[TrialResult]) -> TrialResult | None:
    """The best completed trial (the lowest index on a tie), as the select step ranks."""
    completed = [
        r for r in results if r["status"] == TrialStatus.COMPLETED and r["score"] is not None
    ]
    if not completed:
        return None
    sign = 1.0 if completed[0]["metric"] in LOWER_IS_BETTER else -1.0
    return min(completed, key=lambda r: (sign * float(r["score"] or 0.0), r["trial"]))


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_indexes(text: str) -> set[int]:
    """A Job's ``failedIndexes`` (``"1,3-5"``) as a set of indexes."""
    found: set[int] = set()
    for part in filter(None, text.split(",")):
        match = _RANGE.match(part.strip())
        if match:
            first = int(match.group(1))
            found.update(range(first, int(match.group(2) or first) + 1))
    return found
