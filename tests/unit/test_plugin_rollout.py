"""``kubectl mlkube rollout``: what it prints from a Model, and what it asks of the operator."""

from __future__ import annotations

from typing import Any

import pytest

from mlkube.api import names
from mlkube.api.rollout import RolloutAction
from mlkube.plugin.main import build_parser
from mlkube.plugin.rollout import rollout_request_patch, rollout_status
from mlkube.plugin.views import ViewError


def model(rollout: dict[str, Any] | None) -> dict[str, Any]:
    status: dict[str, Any] = {"servingVersion": 2}
    if rollout is not None:
        status["rollout"] = rollout
    return {
        "metadata": {"name": "iris"},
        "spec": {"serving": {"rollout": {"strategy": "Canary", "canaryPercent": 20}}},
        "status": status,
    }


RUNNING = {
    "phase": "Progressing",
    "candidate": 3,
    "stable": 2,
    "share": 20,
    "readyShare": 0.5,
    "mode": "endpoints",
    "message": "every check passes so far; 12s of analysis left",
    "verdicts": [
        {"check": "requests", "candidate": 40.0, "stable": 41.0, "limit": 30.0, "passed": True},
        {"check": "p99", "candidate": 0.025, "stable": 0.01, "limit": 2.0, "passed": False},
    ],
}


def test_status_shows_the_canary_its_real_share_and_every_figure() -> None:
    text = rollout_status(model(RUNNING))
    lines = text.splitlines()
    assert lines[0] == "strategy Canary, serving v2"
    assert lines[1] == "canary v3 against v2: Progressing (endpoints, 20% asked, 50% of ready pods)"
    assert "12s of analysis left" in lines[2]
    assert lines[4].split() == ["CHECK", "CANDIDATE", "STABLE", "LIMIT", "PASSED"]
    assert lines[6].split() == ["p99", "0.025", "0.01", "2", "False"]
    assert rollout_status(model(None)) == "strategy Canary, serving v2; no canary yet"


def test_promote_and_abort_name_the_running_candidate() -> None:
    patch, message = rollout_request_patch(model(RUNNING), RolloutAction.ABORT)
    assert patch == {"metadata": {"annotations": {names.ROLLOUT_REQUEST: "abort:3"}}}
    assert message == "asked the operator for the rollback of canary v3"
    patch, _ = rollout_request_patch(model(RUNNING), RolloutAction.PROMOTE)
    assert patch["metadata"]["annotations"][names.ROLLOUT_REQUEST] == "promote:3"


def test_nothing_to_steer_is_one_clear_error() -> None:
    with pytest.raises(ViewError, match=r"^no canary is in progress$"):
        rollout_request_patch(model(None), RolloutAction.PROMOTE)
    done = {**RUNNING, "phase": "Promoted"}
    with pytest.raises(ViewError, match=r"the last one: v3 Promoted"):
        rollout_request_patch(model(done), RolloutAction.ABORT)


def test_the_subcommand_takes_an_action_and_a_model() -> None:
    args = build_parser().parse_args(["rollout", "abort", "iris"])
    assert (args.action, args.model) == ("abort", "iris")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rollout", "drop", "iris"])
