"""The V2 binary tensor data extension, so clients such as tritonclient work with defaults.

A request with the ``Inference-Header-Content-Length: N`` header carries N bytes of JSON,
then the raw little-endian bytes of every input whose ``parameters.binary_data_size``
is set, in input order. A response uses the same framing for outputs the client asked
to receive in binary (``parameters.binary_data`` on a requested output, or
``parameters.binary_data_output`` on the request).
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mlkube.runtime.serve.errors import BadRequestError

HEADER: Final = b"inference-header-content-length"
_DTYPES: Final = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def split_request(body: bytes, json_length: int) -> tuple[bytes, bytes]:
    """The JSON header and the binary tail of a request in the binary framing."""
    if json_length > len(body):
        raise BadRequestError(
            f"Inference-Header-Content-Length is {json_length} but the body has {len(body)} bytes"
        )
    return body[:json_length], body[json_length:]


def attach_binary_inputs(inputs: Any, tail: bytes) -> None:
    """Replaces ``data`` of each binary input with the array its bytes hold."""
    if not isinstance(inputs, list):
        return
    offset = 0
    for tensor in inputs:
        if not isinstance(tensor, dict):
            continue
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is None:
            continue
        name = tensor.get("name")
        if type(size) is not int or size < 0 or offset + size > len(tail):
            raise BadRequestError(
                f"input '{name}' declares binary_data_size {size!r} past the body"
            )
        chunk = tail[offset : offset + size]
        offset += size
        datatype = tensor.get("datatype")
        if datatype == "BYTES":
            tensor["data"] = _decode_bytes(chunk, name)
        elif datatype in _DTYPES:
            dtype = np.dtype(_DTYPES[datatype])
            if size % dtype.itemsize:
                raise BadRequestError(
                    f"input '{name}' has {size} bytes, not a whole number of {datatype}"
                )
            tensor["data"] = np.frombuffer(chunk, dtype=dtype)
    if offset != len(tail):
        raise BadRequestError(f"{len(tail) - offset} bytes after the binary inputs belong to none")


def _decode_bytes(chunk: bytes, name: Any) -> list[str]:
    values, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise BadRequestError(f"input '{name}' has a truncated BYTES element")
        (length,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        values.append(chunk[offset : offset + length].decode("utf-8", errors="replace"))
        offset += length
    return values


def wants_binary(doc: dict[str, Any], outputs: list[str]) -> set[str]:
    """Which of the response's ``outputs`` the client asked to receive as raw bytes."""
    parameters = doc.get("parameters")
    if isinstance(parameters, dict) and parameters.get("binary_data_output") is True:
        return set(outputs)
    names = set()
    for output in doc.get("outputs") or []:
        extra = output.get("parameters") if isinstance(output, dict) else None
        if isinstance(extra, dict) and extra.get("binary_data") is True:
            names.add(output["name"])
    return names


def to_binary(outputs: list[dict[str, Any]], which: set[str]) -> list[bytes]:
    """Moves ``data`` of the chosen outputs into raw bytes; returns them in output order."""
    blobs = []
    for output in outputs:
        if output["name"] not in which:
            continue
        data: NDArray[Any] | list[Any] = output.pop("data")
        if output["datatype"] == "BYTES":
            blob = b"".join(struct.pack("<I", len(e)) + e for e in (str(v).encode() for v in data))
        else:
            blob = np.ascontiguousarray(data, dtype=_DTYPES[output["datatype"]]).tobytes()
        output["parameters"] = {"binary_data_size": len(blob)}
        blobs.append(blob)
    return blobs
