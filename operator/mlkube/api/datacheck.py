"""The words of a data-change retrain, shared by the trainer's check and the operator.

``spec.training.retrainWhen: DataChanged`` makes each schedule firing a check first: a
Job runs ``mlkube train --check-data <digest>``, which reads the data as training would
and leaves a :class:`DataCheck` in its termination message; the operator starts a run
with trigger ``data-change`` only when the digest differs from the last trained one.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TypedDict


class RetrainWhen(StrEnum):
    """``spec.training.retrainWhen``: what a schedule firing does."""

    SCHEDULED = "Scheduled"  # every firing trains
    DATA_CHANGED = "DataChanged"  # a firing trains only when the data's digest moved


class DataCheck(TypedDict):
    """The check's one JSON line: the digest of the data as read, and whether it moved."""

    dataSha256: str
    changed: bool


def encode_data_check(digest: str, expected: str) -> bytes:
    check: DataCheck = {"dataSha256": digest, "changed": digest != expected}
    return json.dumps(check, separators=(",", ":")).encode()


def parse_data_check(message: str) -> DataCheck | None:
    """The check from a termination message, or None when it is not one."""
    try:
        raw = json.loads(message)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    digest, changed = raw.get("dataSha256"), raw.get("changed")
    if not isinstance(digest, str) or len(digest) != 64 or not isinstance(changed, bool):
        return None
    return {"dataSha256": digest, "changed": changed}
