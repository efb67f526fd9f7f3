"""The protocol layer: V2 and V1 bodies in, predictions out, metrics and sampled logs on the side.

The transport hands over raw bytes and the path's model name/version; the dataplane
parses, validates against the feature schema (``decoding``), predicts (``model``,
through the ``batching`` queue that coalesces concurrent requests),
encodes, counts predictions by class, and submits a sampled record to the inference
log, failures included. Errors leave as ``ServeError`` with their HTTP status.

What a request can cost is bounded by its size: an output named twice in ``outputs`` is
a 400 (it would repeat the whole tensor in the response), a request id (``id`` or the
``x-request-id`` header) longer than ``MAX_REQUEST_ID_CHARS`` is a 400 (it is copied onto
every logged row), the logged record carries a byte budget proportional to the body, and
a batch whose response would exceed ``RESPONSE_BYTES_PER_BODY_BYTE`` times the body (plus
``RESPONSE_BYTES_PER_REQUEST``) is refused with 413 before predicting: a few bytes of
zeros per row must not become a 10-class probability table a hundred times their size.
Error messages quote client-chosen names shortened to ``QUOTE_CHARS``.

Response shapes:
- V2 ``infer``: ``outputs`` holds ``predict`` ``[n]`` and, for classifiers,
  ``predict_proba`` ``[n, n_classes]`` (columns in ``parameters.classes`` order of the
  model metadata); ``id`` echoes the request's.
- V1 ``:predict``: ``{"predictions": [...]}`` plus, for classifiers,
  ``"probabilities": [[...], ...]`` and ``"classes": [...]`` naming their columns.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from typing import Any, Final

import numpy as np
import orjson
from numpy.typing import NDArray

from mlkube import __version__
from mlkube.runtime.serve.batching import Batcher
from mlkube.runtime.serve.binary import (
    attach_binary_inputs,
    split_request,
    to_binary,
    wants_binary,
)
from mlkube.runtime.serve.decoding import Schema, decode_v1_instances, decode_v2_inputs
from mlkube.runtime.serve.errors import (
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServeError,
)
from mlkube.runtime.serve.inferencelog import InferenceLogger, Record, log_budget
from mlkube.runtime.serve.metrics import ModelMetrics
from mlkube.runtime.serve.model import Batch, ModelInputError, Prediction, ServedModel

SERVER_NAME: Final = "mlkube"
MAX_REQUEST_ID_CHARS: Final = 128
RESPONSE_BYTES_PER_BODY_BYTE: Final = 32
RESPONSE_BYTES_PER_REQUEST: Final = 64 * 1024
JSON_NUMBER_BYTES: Final = 25  # the longest float orjson writes, plus a separator
QUOTE_CHARS: Final = 80
_NUMPY: Final = orjson.OPT_SERIALIZE_NUMPY


def _datatype(array: NDArray[Any]) -> str:
    kind = array.dtype.kind
    return {"b": "BOOL", "i": "INT64", "u": "UINT64", "f": "FP64"}.get(kind, "BYTES")


def _json_ready(array: NDArray[Any]) -> Any:
    """Numeric arrays go to orjson as they are (fast); others as Python lists."""
    if array.dtype.kind in "biuf" and array.flags.c_contiguous:
        return array
    return array.tolist()


class DataPlane:
    """Everything between the HTTP transport and the model, for one served model."""

    def __init__(
        self,
        model: ServedModel,
        metrics: ModelMetrics,
        max_rows: int,
        logger: InferenceLogger | None = None,
        sample_rate: float = 0.0,
        *,
        batcher: Batcher | None = None,
    ) -> None:
        self.model = model
        self.metrics = metrics
        self.batcher = batcher or Batcher(model.predict, max_rows=0, max_wait=0.0)
        self.schema = Schema(model.features, max_rows)
        self._logger = logger
        self._sample_rate = sample_rate if logger is not None else 0.0
        self._outputs = ["predict", "predict_proba"] if model.is_classifier else ["predict"]
        labels = [str(c) for c in model.classes.tolist()] if model.classes is not None else []
        self._label_bytes = max((len(c) + 4 for c in labels), default=JSON_NUMBER_BYTES)
        self._proba_bytes = JSON_NUMBER_BYTES * len(labels)
        self.server_metadata = orjson.dumps(
            {"name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}
        )
        self.model_metadata = orjson.dumps(self._model_metadata())

    def _model_metadata(self) -> dict[str, Any]:
        m = self.model
        inputs = [
            {
                "name": f["name"],
                "datatype": "BYTES"
                if f["kind"] == "categorical" and f["dtype"] == "string"
                else "FP64",
                "shape": [-1],
                "parameters": {k: v for k, v in f.items() if k != "name"},
            }
            for f in m.features
        ]
        outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
        parameters: dict[str, Any] = {
            "task": m.metadata["task"],
            "estimator": m.estimator_class,
            "target": m.metadata.get("target", {}).get("name"),
            "engine": m.engine,
            "engine_reason": m.engine_reason,
        }
        if m.is_classifier and m.classes is not None:
            outputs[0]["datatype"] = _datatype(m.classes)
            outputs.append(
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(m.classes)]}
            )
            parameters["classes"] = m.classes.tolist()
        return {
            "name": m.name,
            "versions": [m.version_label],
            "platform": "sklearn",
            "inputs": inputs,
            "outputs": outputs,
            "parameters": parameters,
        }

    def check_model(self, name: str, version: str | None) -> None:
        """``NotFoundError`` unless ``name`` (and ``version``, if given) is the served model."""
        if name != self.model.name:
            raise NotFoundError(f"unknown model '{name}'; this server serves '{self.model.name}'")
        if version is not None and version != self.model.version_label:
            raise NotFoundError(
                f"unknown version '{version}' of model '{name}'; this server serves version "
                f"{self.model.version_label}"
            )

    async def infer(
        self,
        body: bytes,
        name: str,
        version: str | None,
        header_id: str | None,
        binary_json_length: int | None = None,
    ) -> tuple[bytes, int | None]:
        """A V2 inference request's response body, and its JSON length if it is binary-framed."""
        binary: set[str] = set()
        sampled = self._sample_rate > 0.0 and random.random() < self._sample_rate  # noqa: S311
        request_id = header_id
        batch: Batch | None = None
        body_bytes = len(body)
        budget = log_budget(body_bytes)
        try:
            self.check_model(name, version)
            tail = b""
            if binary_json_length is not None:
                body, tail = split_request(body, binary_json_length)
            doc = _parse(body)
            if binary_json_length is not None:
                attach_binary_inputs(doc.get("inputs"), tail)
            raw_id = doc.get("id")
            if raw_id is not None and not isinstance(raw_id, str):
                raise BadRequestError("'id' must be a string")
            check_request_id(raw_id, "'id'")
            # Every answer carries an id, so a label can name the prediction later.
            request_id = raw_id or request_id or secrets.token_hex(16)
            wanted = self._requested_outputs(doc.get("outputs"))
            if binary_json_length is not None:
                binary = wants_binary(doc, wanted)
            parameters = doc.get("parameters")
            if parameters is not None and not isinstance(parameters, dict):
                raise BadRequestError("'parameters' must be an object")
            batch = decode_v2_inputs(doc.get("inputs"), self.schema)
            self._check_response_size(batch.rows, "predict_proba" in wanted, body_bytes)
            prediction = await self._predict(batch)
        except ServeError as error:
            if sampled:
                self._log(request_id, error.status, batch, None, error.message, budget=budget)
            raise
        if sampled:
            self._log(request_id, 200, batch, prediction.labels, None, budget=budget)
        response: dict[str, Any] = {
            "model_name": self.model.name,
            "model_version": self.model.version_label,
        }
        if request_id is not None:
            response["id"] = request_id
        response["outputs"] = self._v2_outputs(prediction, wanted)
        if binary:
            blobs = to_binary(response["outputs"], binary)
            header = orjson.dumps(response, option=_NUMPY)
            return header + b"".join(blobs), len(header)
        return orjson.dumps(response, option=_NUMPY), None

    async def predict_v1(self, body: bytes, name: str, header_id: str | None) -> bytes:
        """A V1 ``:predict`` request's response body."""
        sampled = self._sample_rate > 0.0 and random.random() < self._sample_rate  # noqa: S311
        batch: Batch | None = None
        budget = log_budget(len(body))
        try:
            self.check_model(name, None)
            doc = _parse(body)
            if "instances" not in doc:
                raise BadRequestError(
                    "the body needs 'instances': a list of {feature: value} records"
                )
            batch = decode_v1_instances(doc["instances"], self.schema)
            self._check_response_size(batch.rows, self.model.is_classifier, len(body))
            prediction = await self._predict(batch)
        except ServeError as error:
            if sampled:
                self._log(header_id, error.status, batch, None, error.message, budget=budget)
            raise
        if sampled:
            self._log(header_id, 200, batch, prediction.labels, None, budget=budget)
        response: dict[str, Any] = {"predictions": _json_ready(prediction.labels)}
        if prediction.proba is not None and self.model.classes is not None:
            response["probabilities"] = prediction.proba
            response["classes"] = self.model.classes.tolist()
        return orjson.dumps(response, option=_NUMPY)

    def _check_response_size(self, rows: int, with_proba: bool, body_bytes: int) -> None:
        """413 when the response would outgrow its budget, before any prediction is made."""
        per_row = max(self._label_bytes, JSON_NUMBER_BYTES)
        per_row += self._proba_bytes if with_proba else 0
        budget = RESPONSE_BYTES_PER_BODY_BYTE * body_bytes + RESPONSE_BYTES_PER_REQUEST
        if rows * per_row > budget:
            raise PayloadTooLargeError(
                f"the response for {rows} rows would be about {rows * per_row} bytes, more than "
                f"{RESPONSE_BYTES_PER_BODY_BYTE}x the request's {body_bytes}; send fewer rows "
                "per request, or ask only for the 'predict' output"
            )

    async def _predict(self, batch: Batch) -> Prediction:
        try:
            prediction = await self.batcher.predict(batch)
        except ModelInputError as error:
            raise BadRequestError(str(error)) from None
        self.metrics.predicted(prediction.labels, self.model.is_classifier)
        return prediction

    def _requested_outputs(self, outputs: Any) -> list[str]:
        if outputs is None:
            return self._outputs
        if not isinstance(outputs, list) or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
        ):
            raise BadRequestError("'outputs' must be a list of objects with a 'name'")
        names = [o["name"] for o in outputs]
        repeated = sorted(n for n, times in Counter(names).items() if times > 1)
        if repeated:
            raise BadRequestError(
                f"'outputs' names {', '.join(_quote(n) for n in repeated)} more than once"
            )
        unknown = [n for n in names if n not in self._outputs]
        if unknown:
            raise BadRequestError(
                f"unknown output(s) {', '.join(_quote(n) for n in unknown[:5])}; "
                f"this model outputs {', '.join(self._outputs)}"
            )
        return names

    def _v2_outputs(self, prediction: Prediction, wanted: list[str]) -> list[dict[str, Any]]:
        labels = prediction.labels
        out: list[dict[str, Any]] = []
        for name in wanted:
            if name == "predict":
                out.append(
                    {
                        "name": "predict",
                        "shape": [len(labels)],
                        "datatype": _datatype(labels),
                        "data": _json_ready(labels),
                    }
                )
            elif prediction.proba is not None:
                proba = np.ascontiguousarray(prediction.proba, dtype=np.float64)
                out.append(
                    {
                        "name": "predict_proba",
                        "shape": list(proba.shape),
                        "datatype": "FP64",
                        "data": proba.reshape(-1),
                    }
                )
        return out

    def _log(
        self,
        request_id: str | None,
        status: int,
        batch: Batch | None,
        labels: NDArray[Any] | None,
        error: str | None,
        *,
        budget: int,
    ) -> None:
        assert self._logger is not None
        self._logger.submit(
            Record(
                ts=time.time(),
                request_id=request_id or secrets.token_hex(16),
                status=status,
                batch=batch,
                outputs=labels,
                error=error,
                budget=budget,
            )
        )


def _quote(name: str) -> str:
    """A client-chosen name for an error message, shortened so the message stays small."""
    return repr(name if len(name) <= QUOTE_CHARS else name[:QUOTE_CHARS] + "...")


def check_request_id(request_id: str | None, where: str) -> None:
    """A request id longer than ``MAX_REQUEST_ID_CHARS`` is a client error (400)."""
    if request_id is not None and len(request_id) > MAX_REQUEST_ID_CHARS:
        raise BadRequestError(
            f"{where} has {len(request_id)} characters; at most {MAX_REQUEST_ID_CHARS} are allowed"
        )


def _parse(body: bytes) -> dict[str, Any]:
    if not body:
        raise BadRequestError("the request body is empty; send a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequestError(f"the request body is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise BadRequestError("the request body must be a JSON object")
    return doc
