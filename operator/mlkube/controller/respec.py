"""A spec edit means a new version: the run for an edited training spec, and its verdict.

GitOps users change a Model by merging a pull request; a changed estimator, data, validation
or data quality must train, or the merge silently changes nothing. The Model's status keeps
the digest of the spec it last started a run for; when the spec's digest differs, one
TrainingJob with trigger ``spec-change`` is made for the newest generation, after the edits
have been quiet for a moment (a burst of edits is one run). Edits of labels, serving,
placement or the schedule leave the digest alone and train nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from mlkube.api import names
from mlkube.api.resources import Body, training_job_resource
from mlkube.api.status import TERMINAL_PHASES, Decision, Reason, Trigger
from mlkube.controller.children import Controller, ensure_child
from mlkube.controller.spec import generation_of, name_of, namespace_of, status_of
from mlkube.controller.spec import training_digest as digest_of

# Edits closer together than this are one change.
QUIET_SECONDS: Final = 2.0
SPEC_GENERATION: Final = f"{names.GROUP}/model-generation"
SPEC_DIGEST: Final = f"{names.GROUP}/spec-digest"


async def ensure_spec_run(
    ctl: Controller, model: Body, status: dict[str, Any], runs: list[Body]
) -> tuple[Body | None, float | None]:
    """Makes the run for an edited spec once the edits are quiet; returns it, or when to look."""
    digest = digest_of(model)
    if status.get("specDigest") in (None, digest):
        # A new Model's first run, or an upgraded operator's first look, trains this spec.
        status["specDigest"] = digest
        status.setdefault("specGeneration", generation_of(model))
        return None, None
    generation = generation_of(model)
    key = (namespace_of(model), name_of(model), digest)
    first_seen = ctl.first_seen.setdefault(key, time.monotonic())
    wait = QUIET_SECONDS - (time.monotonic() - first_seen)
    if wait > 0:
        return None, wait
    name = names.spec_change_training_job_name(name_of(model), generation)
    desired = _spec_change_run(model, name, generation, digest)
    _, created = await ensure_child(ctl, desired, updatable=False)
    ctl.first_seen.pop(key, None)
    status["specDigest"], status["specGeneration"] = digest, generation
    found = created or ctl.cache.get("TrainingJob", namespace_of(model), name)
    return (found if found is not None and found not in runs else None), None


def _spec_change_run(model: Body, name: str, generation: int, digest: str) -> dict[str, Any]:
    return training_job_resource(
        model,
        name,
        Trigger.SPEC_CHANGE,
        f"spec.training of generation {generation} differs from what was last trained",
        annotations={SPEC_GENERATION: str(generation), SPEC_DIGEST: digest},
    )


def spec_state(status: Mapping[str, Any], current: str, runs: list[Body]) -> tuple[str, str] | None:
    """``(reason, message)`` while the spec in the cluster is not what serves, else None.

    ``SpecChanged``: edits are settling or their run is going. ``SpecRejected``: the run's
    version was rejected or failed, and an older one keeps serving.
    """
    requested = status.get("specDigest")
    if requested is None:
        return None
    if requested != current:
        return Reason.SPEC_CHANGED, "waiting for the edits of the spec to settle"
    versions = list(status.get("versions") or [])
    serving = next((v for v in versions if v.get("version") == status.get("servingVersion")), None)
    if serving is not None and serving.get("specDigest") == requested:
        return None
    if any(_trains(run, requested) for run in runs):
        return Reason.SPEC_CHANGED, (
            f"training the spec of generation {status.get('specGeneration')}"
        )
    trained = [v for v in versions if v.get("specDigest") == requested]
    if not trained or trained[-1].get("decision") not in (Decision.REJECTED, Decision.FAILED):
        return None
    latest = trained[-1]
    keeps = f"v{serving['version']} keeps serving" if serving is not None else "nothing serves"
    return Reason.SPEC_REJECTED, (
        f"the spec of generation {latest.get('generation')} trained v{latest['version']}, "
        f"which was {str(latest.get('decision')).lower()}: {latest.get('reason')}; {keeps}"
    )


def _trains(run: Body, digest: str) -> bool:
    """A run still going that trains ``digest`` (by its annotation, or its recorded spec)."""
    if status_of(run).get("phase") in TERMINAL_PHASES:
        return False
    annotations = (run.get("metadata") or {}).get("annotations") or {}
    return digest in (annotations.get(SPEC_DIGEST), status_of(run).get("specDigest"))
