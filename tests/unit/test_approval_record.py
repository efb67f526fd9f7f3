"""A manual promotion's record: who approved which version and why, in the history."""

from __future__ import annotations

from typing import Any

from mlkube.api import names
from mlkube.controller.registry import update_registry
from mlkube.plugin import views

NOW = "2026-12-02T12:00:00Z"


def status() -> dict[str, Any]:
    def entry(version: int, decision: str) -> dict[str, Any]:
        return {"version": version, "decision": decision, "score": 0.9, "promoted": False}

    return {
        "versions": [entry(1, "Promoted"), entry(2, "Pending")],
        "servingVersion": 1,
        "promotions": [{"version": 1, "time": NOW, "reason": "passed the checks"}],
    }


def approval(version: str) -> dict[str, str]:
    return {
        names.APPROVED_BY: "alice@example.org",
        names.APPROVED_VERSION: version,
        names.APPROVAL_REASON: "reviewed the slice scores",
    }


def test_a_pin_with_an_approval_for_it_records_who_and_why() -> None:
    spec = {"serving": {"version": 2}}
    registry = update_registry(status(), [], spec, NOW, approval=approval("2"))
    change = registry.promotions[-1]
    assert (change["version"], change["previous"]) == (2, 1)
    assert change["approvedBy"] == "alice@example.org"
    assert change["reason"] == "approved by alice@example.org: reviewed the slice scores"


def test_an_approval_of_another_version_is_not_credited_to_this_pin() -> None:
    spec = {"serving": {"version": 2}}
    registry = update_registry(status(), [], spec, NOW, approval=approval("3"))
    change = registry.promotions[-1]
    assert "approvedBy" not in change and change["reason"].startswith("pinned by")


def test_the_plugins_pin_carries_the_approval_record() -> None:
    patch = views.serving_pin(2, "system:serviceaccount:ml:bob", "go")
    assert patch["spec"] == {"serving": {"version": 2}}
    assert patch["metadata"]["annotations"] == {
        names.APPROVED_BY: "system:serviceaccount:ml:bob",
        names.APPROVED_VERSION: "2",
        names.APPROVAL_REASON: "go",
    }
