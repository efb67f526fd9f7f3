"""``POST /v2/models/{name}/feedback``: ground-truth labels for earlier predictions.

Body: ``{"labels": [{"id": "<request id>", "label": <value>, "row": <i>}, ...]}``. The id
is the V2 ``id`` the client sent or the one the server returned (every V2 answer carries
one); ``row`` names a row of a batch request (default 0). Labels are checked against the
model before anything is written: a classifier's label must be one of its classes, in
the classes' own JSON type (``1`` for integer classes, ``"yes"`` for string classes); a
regressor's must be a finite number. One bad label refuses the whole request (400 naming
it), so a batch is written whole or not at all. Whether a prediction with that id was
logged is not known here: the drift checker counts labels that join nothing.

Accepted labels go to a second inference-log writer under ``<log dir>/labels/`` (same
bounded, non-blocking writer, same hour layout), one line each::

    {"ts": "...", "model": "iris", "version": 2, "request_id": "...", "row": 0, "label": 1}

A writer too far behind refuses the batch with 503 and Retry-After instead of dropping it.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from mlkube.api.performance import MAX_FEEDBACK_LABELS, MAX_LABEL_CHARS
from mlkube.runtime.serve.dataplane import check_request_id
from mlkube.runtime.serve.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnavailableError,
)
from mlkube.runtime.serve.inferencelog import InferenceLogger, Record
from mlkube.runtime.serve.model import ServedModel


class Feedback:
    """Validates feedback bodies for one served model and hands the labels to a writer."""

    def __init__(self, model: ServedModel, writer: InferenceLogger | None, max_rows: int) -> None:
        self.model = model
        self.writer = writer
        self.max_rows = max_rows
        classes = model.classes.tolist() if model.classes is not None else None
        self.classes: set[Any] | None = None
        self.string_classes = False
        if model.metadata["task"] == "classification" and classes is not None:
            self.classes = set(classes)
            self.string_classes = all(isinstance(c, str) for c in classes)

    def handle(self, body: bytes) -> bytes:
        """The response body for an accepted batch; a ``ServeError`` for anything else."""
        if self.writer is None:
            raise BadRequestError(
                "this predictor does not log inferences (sample rate 0), so labels have "
                "no predictions to join; enable serving.inferenceLogging"
            )
        labels = self.parse(body)
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        base = {
            "ts": stamp.replace("+00:00", "Z"),
            "model": self.model.name,
            "version": self.model.version,
        }
        option = orjson.OPT_APPEND_NEWLINE
        lines = tuple(
            orjson.dumps({**base, "request_id": rid, "row": row, "label": label}, option=option)
            for rid, row, label in labels
        )
        record = Record(now, "", 200, None, None, None, budget=sum(map(len, lines)), lines=lines)
        if not self.writer.submit(record):
            raise UnavailableError("the label writer is behind; retry shortly", 2)
        return orjson.dumps({"accepted": len(labels)})

    def parse(self, body: bytes) -> list[tuple[str, int, Any]]:
        """``(request id, row, label)`` of every label; ``BadRequestError`` on a bad one."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            raise BadRequestError(f"the body is not JSON: {error}") from None
        items = doc.get("labels") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise BadRequestError(
                'the body needs "labels": a non-empty list of {"id": ..., "label": ...}'
            )
        if len(items) > MAX_FEEDBACK_LABELS:
            raise PayloadTooLargeError(
                f"{len(items)} labels in one request; send at most {MAX_FEEDBACK_LABELS}"
            )
        return [self._item(index, item) for index, item in enumerate(items)]

    def _item(self, index: int, item: Any) -> tuple[str, int, Any]:
        where = f"labels[{index}]"
        if not isinstance(item, dict):
            raise BadRequestError(f"{where} must be an object with id and label")
        unknown = sorted(set(item) - {"id", "label", "row"})
        if unknown:
            raise BadRequestError(f"{where} has unknown field(s) {', '.join(unknown[:5])}")
        request_id = item.get("id")
        if not isinstance(request_id, str) or not request_id:
            raise BadRequestError(f"{where}.id must be a non-empty string (the request's id)")
        check_request_id(request_id, f"{where}.id")
        row = item.get("row", 0)
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < self.max_rows:
            raise BadRequestError(
                f"{where}.row must be an integer from 0 to {self.max_rows - 1}, got {row!r}"
            )
        if "label" not in item:
            raise BadRequestError(f"{where} has no label")
        return request_id, row, self._label(where, item["label"])

    def _label(self, where: str, label: Any) -> Any:
        if self.classes is None:
            if isinstance(label, bool) or not isinstance(label, int | float):
                raise BadRequestError(f"{where}.label must be a number (a regression target)")
            if not math.isfinite(label):
                raise BadRequestError(f"{where}.label must be finite")
            return label
        wanted: tuple[type, ...] = (str,) if self.string_classes else (int, float)
        if isinstance(label, bool) or not isinstance(label, wanted):
            kind = "a string" if self.string_classes else "a number"
            raise BadRequestError(
                f"{where}.label must be {kind}, one of the model's classes, got {label!r}"[:300]
            )
        if isinstance(label, str) and len(label) > MAX_LABEL_CHARS:
            raise BadRequestError(f"{where}.label is longer than {MAX_LABEL_CHARS} characters")
        if label not in self.classes:
            shown = ", ".join(repr(c) for c in sorted(self.classes, key=str)[:20])
            raise BadRequestError(f"{where}.label {label!r} is not a class of the model ({shown})")
        return label
