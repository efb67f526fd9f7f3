"""The version registry in ``Model.status``: fold finished TrainingJobs in, decide, pick serving.

Pure, so the rules are unit-tested: versions are decided once, in version order, each
against the version serving at that moment; a pin (``spec.serving.version``) wins over
the promoted version but never points at a failed or rejected-and-missing artifact; the
history of serving changes is appended, both lists bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlkube.api import names
from mlkube.api.rollout import RolloutPhase, rollout_spec
from mlkube.api.status import TERMINAL_PHASES, Decision, Phase
from mlkube.controller.promotion import promotion_decision


@dataclass
class Registry:
    versions: list[dict[str, Any]]
    promotions: list[dict[str, Any]]
    serving_version: int | None
    pin_problem: str | None = None
    decided: list[dict[str, Any]] = field(default_factory=list)
    # A version that passed the gate and is being analysed as a canary (rollout Canary).
    candidate: int | None = None

    def entry(self, version: int | None) -> dict[str, Any] | None:
        return next((v for v in self.versions if v.get("version") == version), None)


def version_entry(training_job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The versions[] entry of a finished TrainingJob (None while it runs)."""
    status = training_job.get("status") or {}
    version = status.get("version")
    phase = status.get("phase")
    if version is None or phase not in TERMINAL_PHASES:
        return None
    entry: dict[str, Any] = {
        "version": int(version),
        "trainingJob": training_job["metadata"]["name"],
        "trigger": (training_job.get("spec") or {}).get("trigger") or "manual",
    }
    if status.get("completionTime"):
        entry["trainedAt"] = status["completionTime"]
    for source, target in (
        ("modelGeneration", "generation"),
        ("specDigest", "specDigest"),
        ("lineage", "lineage"),
    ):
        if status.get(source) is not None:
            entry[target] = status[source]
    if phase == Phase.FAILED:
        message = str(status.get("message") or "training failed")
        entry.update(
            {
                "decision": Decision.FAILED,
                "promoted": False,
                "reason": message.splitlines()[0][:500],
            }
        )
        return entry
    artifact = status.get("artifact") or {}
    entry.update(
        {
            "metric": status.get("metric"),
            "higherIsBetter": bool(status.get("higherIsBetter", True)),
            "score": status.get("score"),
            "metrics": dict(status.get("metrics") or {}),
            "slices": list(status.get("slices") or []),
            "promoted": False,
        }
    )
    if artifact.get("uri"):
        entry["uri"] = artifact["uri"]
    if artifact.get("sha256"):
        entry["sha256"] = artifact["sha256"]
    if artifact.get("onnxSha256"):
        entry["onnxSha256"] = artifact["onnxSha256"]
    return {k: v for k, v in entry.items() if v is not None}


def servable(entry: Mapping[str, Any] | None) -> bool:
    return entry is not None and entry.get("decision") != Decision.FAILED and "score" in entry


def update_registry(
    status: Mapping[str, Any],
    training_jobs: Sequence[Mapping[str, Any]],
    spec: Mapping[str, Any],
    now: str,
    max_entries: int = 50,
    *,
    approval: Mapping[str, str] | None = None,
) -> Registry:
    versions = [dict(v) for v in status.get("versions") or []]
    promotions = [dict(p) for p in status.get("promotions") or []]
    serving = status.get("servingVersion")
    registry = Registry(versions, promotions, int(serving) if serving else None)
    rollout = status.get("rollout") or {}
    if rollout.get("phase") == RolloutPhase.PROGRESSING and rollout.get("candidate"):
        registry.candidate = int(rollout["candidate"])
    canary = rollout_spec(spec.get("serving")).canary
    known = {int(v["version"]) for v in versions}
    new = [
        e for e in (version_entry(tj) for tj in training_jobs) if e and e["version"] not in known
    ]
    promotion = spec.get("promotion") or {}
    pin = (spec.get("serving") or {}).get("version")
    for entry in sorted(new, key=lambda e: int(e["version"])):
        if registry.serving_version is not None:
            entry["parent"] = registry.serving_version
        if entry.get("decision") != Decision.FAILED:
            current = registry.entry(registry.serving_version)
            decision = promotion_decision(entry, current, promotion)
            entry["decision"] = decision.outcome
            entry["reason"] = decision.reason
            if decision.promote and pin is None:
                _promote(registry, entry, decision.reason, now, canary=canary)
        registry.versions.append(entry)
        registry.decided.append(entry)
    if pin is not None:
        pinned = registry.entry(int(pin))
        if servable(pinned) and pinned is not None:
            if registry.serving_version != int(pin):
                _serve(registry, pinned, f"pinned by spec.serving.version={pin}", now)
                _record_approval(registry.promotions[-1], approval or {}, int(pin))
        else:
            why = "does not exist" if pinned is None else "has no servable artifact (it failed)"
            registry.pin_problem = f"spec.serving.version {pin} {why}"
    elif registry.serving_version is not None:
        promoted = [v for v in registry.versions if v.get("decision") == Decision.PROMOTED]
        if promoted and int(promoted[-1]["version"]) != registry.serving_version:
            _serve(registry, promoted[-1], "pin removed: back to the latest promoted version", now)
    registry.versions = _bounded(registry.versions, registry.serving_version, max_entries)
    registry.promotions = registry.promotions[-max_entries:]
    return registry


def _record_approval(change: dict[str, Any], approval: Mapping[str, str], pin: int) -> None:
    """Who approved a pin and why, when the approval names this version (the admission
    policy has checked that the approver is who made the change)."""
    if approval.get(names.APPROVED_VERSION) != str(pin) or not approval.get(names.APPROVED_BY):
        return
    change["approvedBy"] = approval[names.APPROVED_BY][:256]
    change["approvalReason"] = approval.get(names.APPROVAL_REASON, "")[:1024]
    change["reason"] = f"approved by {change['approvedBy']}: {change['approvalReason']}"


def _promote(
    registry: Registry, entry: dict[str, Any], reason: str, now: str, *, canary: bool
) -> None:
    """A version that passed the gate serves, or with a Canary rollout becomes the candidate
    (the first version has nothing to be compared with, so it serves at once)."""
    if canary and registry.serving_version is not None:
        _start_canary(registry, entry, reason)
    else:
        _serve(registry, entry, reason, now)


def _start_canary(registry: Registry, entry: dict[str, Any], reason: str) -> None:
    """The version passed the gate; it serves a share of traffic before it is promoted."""
    superseded = registry.entry(registry.candidate)
    if superseded is not None:
        superseded["decision"] = Decision.REJECTED
        superseded["reason"] = f"superseded by v{entry['version']} before its canary ended"
    entry["decision"] = Decision.PENDING
    entry["reason"] = f"{reason}; canary analysis against v{registry.serving_version}"
    registry.candidate = int(entry["version"])


def finish_canary(
    registry: Registry, promoted: bool, reason: str, now: str, record: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Ends the candidate's canary: promoted (it serves) or rolled back (stable stays).

    Either way the promotion history gets an entry with the figures (``record``).
    Returns the candidate's entry.
    """
    entry = registry.entry(registry.candidate)
    registry.candidate = None
    if entry is None:
        return None
    entry["decision"] = Decision.PROMOTED if promoted else Decision.REJECTED
    entry["reason"] = reason
    if promoted:
        _serve(registry, entry, reason, now)
    else:
        change: dict[str, Any] = {"time": now, "reason": reason}
        if registry.serving_version is not None:
            change["version"] = registry.serving_version
        registry.promotions.append(change)
    registry.promotions[-1]["canary"] = dict(record)
    return entry


def _serve(registry: Registry, entry: dict[str, Any], reason: str, now: str) -> None:
    change: dict[str, Any] = {"version": int(entry["version"]), "time": now, "reason": reason}
    if registry.serving_version is not None:
        change["previous"] = registry.serving_version
    registry.promotions.append(change)
    registry.serving_version = int(entry["version"])
    entry["promoted"] = True


def _bounded(
    versions: list[dict[str, Any]], serving: int | None, limit: int
) -> list[dict[str, Any]]:
    """Drops the oldest entries beyond ``limit``, never the serving one."""
    ordered = sorted(versions, key=lambda v: int(v["version"]))
    while len(ordered) > limit:
        victim = next(v for v in ordered if v.get("version") != serving)
        ordered.remove(victim)
    return ordered
