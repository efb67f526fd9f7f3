"""The corpus's resource cases on the real control plane: values only the operator can
reject (the schema admits them) end as ``Ready=False`` with the expected reason and a
message naming the problem, plus an Event — and no Job or TrainingJob is made for them.

A case the API server rejects at admission (schema or CEL) passes too when kubectl's
error names the problem: the user still sees it where they look.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import OperatorKit, OperatorProcess
from reliability.corpus import RESOURCES, ResourceCase


def _condition(obj: dict[str, Any] | None, reason: str) -> dict[str, Any] | None:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "Ready",
            "False",
            reason,
        ):
            return dict(condition)
    return None


@pytest.mark.parametrize("case", RESOURCES, ids=lambda c: c.id)
def test_resource_case_is_reported_on_the_object_with_an_event(
    operator: OperatorProcess, kit: OperatorKit, case: ResourceCase
) -> None:
    for manifest in case.manifests:
        result = kit.kubectl("apply", "-f", "-", input_text=json.dumps(manifest), check=False)
        if result.returncode:
            assert case.expect.lower() in result.stderr.lower(), result.stderr
            return
    kind = case.kind.lower()
    condition = kit.wait(
        f"{case.kind}/{case.name} Ready=False/{case.reason}",
        lambda: _condition(kit.get(kind, case.name), case.reason),
        timeout=30,
    )
    assert case.expect.lower() in condition["message"].lower(), condition
    if not case.event:
        return
    events = kit.wait(
        "an Event",
        lambda: [
            e
            for e in kit.events_for(case.kind, case.name)
            if case.expect.lower() in e["message"].lower()
        ],
    )
    assert events[0]["type"] == "Warning"
    assert "Traceback" not in operator.tail(200)
    if case.reason != "InvalidPin":
        assert kit.list("jobs") == []
        if case.kind == "Model":
            assert kit.list("trainingjobs") == []
