"""Request bodies to validated ``Batch`` objects, against the model's feature schema.

Pure functions: V2 tensors (one named tensor per feature, or one 2-D tensor in feature
order) and V1 instances (records or rows) become a float64 matrix when every feature is
numeric, else per-feature columns. Every rejection is a ``BadRequestError`` (or
``PayloadTooLargeError`` for too many rows) whose message names the input, so a client can fix
its request without reading server code. The common case (a numeric batch with nothing
missing) costs one ``np.asarray`` and one ``isfinite`` check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from mlkube.runtime.artifact import FeatureSchema
from mlkube.runtime.serve.errors import BadRequestError, PayloadTooLargeError
from mlkube.runtime.serve.model import Batch

NUMERIC_DATATYPES: Final = frozenset(
    {
        "BOOL",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "FP16",
        "FP32",
        "FP64",
    }
)
DATATYPES: Final = NUMERIC_DATATYPES | {"BYTES"}


class Schema:
    """The model's features, prepared once for fast checks on every request."""

    def __init__(self, features: Sequence[FeatureSchema], max_rows: int) -> None:
        self.features = list(features)
        self.names = [f["name"] for f in features]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.name_set = frozenset(self.names)
        self.numeric_only = all(f["kind"] == "numeric" for f in features)
        self.strings = [f["kind"] == "categorical" and f["dtype"] == "string" for f in features]
        self.nullable = np.array([bool(f.get("nullable", False)) for f in features])
        self.max_rows = max_rows


def decode_v2_inputs(inputs: Any, schema: Schema) -> Batch:
    """The ``inputs`` of a V2 request as a validated batch."""
    if not isinstance(inputs, list) or not inputs:
        raise BadRequestError("'inputs' must be a non-empty list of tensors")
    tensors = [_tensor_header(i, t) for i, t in enumerate(inputs)]
    first = tensors[0][0]
    if len(tensors) == 1 and (first not in schema.name_set or len(schema.names) == 1):
        return _from_matrix_tensor(*tensors[0], schema)
    return _from_feature_tensors(tensors, schema)


def _tensor_header(position: int, tensor: Any) -> tuple[str, list[int], str, Any]:
    if not isinstance(tensor, dict):
        raise BadRequestError(
            f"input #{position} must be an object with name, shape, datatype, data"
        )
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequestError(f"input #{position} has no 'name'")
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise BadRequestError(f"input '{name}' has no '{key}'")
    shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequestError(f"input '{name}' has shape {shape!r}; expected a list of sizes")
    if datatype not in DATATYPES:
        raise BadRequestError(
            f"input '{name}' has datatype {datatype!r}; "
            f"expected one of {', '.join(sorted(DATATYPES))}"
        )
    if not isinstance(data, list | np.ndarray):
        raise BadRequestError(f"input '{name}' has 'data' that is not a list")
    return name, shape, datatype, data


def check_rows(rows: int, what: str, schema: Schema) -> None:
    if rows == 0:
        raise BadRequestError(f"{what} is an empty batch: send at least one row")
    if rows > schema.max_rows:
        raise PayloadTooLargeError(
            f"{what} has {rows} rows; this server accepts at most {schema.max_rows}"
        )


def _from_matrix_tensor(
    name: str, shape: list[int], datatype: str, data: list[Any], schema: Schema
) -> Batch:
    width = len(schema.names)
    if not (len(shape) == 2 and shape[1] == width) and not (width == 1 and len(shape) == 1):
        raise BadRequestError(
            f"input '{name}' has shape {shape}; a single tensor must be [rows, {width}] with "
            f"the features in order ({_listing(schema.names)}), or send one tensor per feature"
        )
    rows = shape[0]
    check_rows(rows, f"input '{name}'", schema)
    if schema.numeric_only:
        _require_numeric_datatype(name, datatype)
        try:
            flat = numeric_array(data, name, datatype, rows * width)
        except BadRequestError:
            _locate_non_number(_flatten(data), width, schema, f"input '{name}' ")
            raise
        matrix = flat.reshape(rows, width)
        check_missing(matrix, schema, f"input '{name}' column ")
        return Batch(rows=rows, matrix=matrix)
    cells = _object_array(data, name, rows * width).reshape(rows, width)
    columns = {n: cells[:, i] for i, n in enumerate(schema.names)}
    return columns_batch(columns, rows, schema, f"input '{name}' column ")


def _from_feature_tensors(tensors: list[tuple[str, list[int], str, Any]], schema: Schema) -> Batch:
    names = [t[0] for t in tensors]
    unknown = [n for n in names if n not in schema.name_set]
    if unknown:
        raise BadRequestError(
            f"unknown input(s) {_listing(unknown)}; "
            f"the model's features are {_listing(schema.names)}"
        )
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise BadRequestError(f"input(s) {_listing(twice)} given more than once")
    missing = [n for n in schema.names if n not in set(names)]
    if missing:
        raise BadRequestError(f"missing input(s) {_listing(missing)}: send one tensor per feature")
    rows = -1
    first = ""
    columns: dict[str, NDArray[Any]] = {}
    for name, shape, datatype, data in tensors:
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise BadRequestError(
                f"input '{name}' has shape {shape}; a feature tensor is [rows] or [rows, 1]"
            )
        if rows < 0:
            rows, first = shape[0], name
            check_rows(rows, f"input '{name}'", schema)
        elif shape[0] != rows:
            raise BadRequestError(
                f"input '{name}' has {shape[0]} rows but input '{first}' has {rows}"
            )
        if schema.strings[schema.index[name]]:
            if datatype != "BYTES":
                raise BadRequestError(
                    f"input '{name}' is a categorical feature: send datatype BYTES, not {datatype}"
                )
            columns[name] = _object_array(data, name, rows)
        else:
            _require_numeric_datatype(name, datatype)
            columns[name] = numeric_array(data, name, datatype, rows)
    if schema.numeric_only:
        matrix = np.column_stack([columns[n] for n in schema.names])
        check_missing(matrix, schema, "input ")
        return Batch(rows=rows, matrix=matrix)
    return columns_batch(columns, rows, schema, "input ")


def _require_numeric_datatype(name: str, datatype: str) -> None:
    if datatype not in NUMERIC_DATATYPES:
        raise BadRequestError(
            f"input '{name}' has datatype {datatype} but the feature is numeric: use FP64"
        )


def numeric_array(data: Any, name: str, datatype: str, expected: int) -> NDArray[np.float64]:
    """Flattens ``data`` to float64 (null → NaN), refusing strings, bad shapes and bad ints."""
    try:
        array = np.asarray(data)
    except ValueError:
        raise BadRequestError(f"input '{name}' has nested lists of uneven length") from None
    kind = array.dtype.kind
    if kind in "US":
        sample = next(v for v in array.ravel().tolist() if isinstance(v, str))
        raise BadRequestError(f"input '{name}' holds a string ({sample!r}) but needs numbers")
    if kind == "O":
        array = _objects_to_float(array.ravel().tolist(), name)
    elif kind not in "fiub":
        raise BadRequestError(f"input '{name}' holds values that are not numbers")
    if array.size != expected:
        raise BadRequestError(
            f"input '{name}' has {array.size} values but its shape needs {expected}"
        )
    values = array.astype(np.float64, copy=False).reshape(-1)
    if datatype.startswith(("INT", "UINT")) and kind == "f":
        finite = values[np.isfinite(values)]
        if finite.size and not np.array_equal(finite, np.floor(finite)):
            bad = finite[finite != np.floor(finite)][0]
            raise BadRequestError(
                f"input '{name}' is {datatype} but holds the non-integer value {bad}"
            )
    return values


def _objects_to_float(values: list[Any], name: str) -> NDArray[np.float64]:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            out[i] = math.nan
        elif isinstance(value, bool | int | float):
            out[i] = value
        elif isinstance(value, str):
            raise BadRequestError(f"input '{name}' holds a string ({value!r}) but needs numbers")
        else:
            raise BadRequestError(f"input '{name}' has a value that is not a number: {value!r}")
    return out


def _object_array(data: Any, name: str, expected: int) -> NDArray[Any]:
    flat = _flatten(data)
    if len(flat) != expected:
        raise BadRequestError(
            f"input '{name}' has {len(flat)} values but its shape needs {expected}"
        )
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    for value in data:
        flat.extend(_flatten(value) if isinstance(value, list) else [value])
    return flat


def check_missing(matrix: NDArray[np.float64], schema: Schema, where: str) -> None:
    """Refuses NaN/null in features that are not nullable, and infinities anywhere."""
    bad = ~np.isfinite(matrix)
    if not bad.any():
        return
    inf_rows, inf_cols = np.nonzero(np.isinf(matrix))
    if inf_rows.size:
        name = schema.names[inf_cols[0]]
        raise BadRequestError(
            f"{where}'{name}' is infinite in row {inf_rows[0]}; values must be finite"
        )
    refused = bad & ~schema.nullable
    if refused.any():
        rows, cols = np.nonzero(refused)
        name = schema.names[cols[0]]
        raise BadRequestError(
            f"{where}'{name}' is missing (null/NaN) in row {rows[0]}, and feature '{name}' "
            "does not allow missing values"
        )


def columns_batch(columns: dict[str, NDArray[Any]], rows: int, schema: Schema, where: str) -> Batch:
    """Validates per-feature object/float columns of a schema with categorical features."""
    out: dict[str, NDArray[Any]] = {}
    for i, name in enumerate(schema.names):
        column = columns[name]
        if schema.strings[i]:
            missing = []
            for row, value in enumerate(column.tolist()):
                if value is None:
                    missing.append(row)
                    if not schema.nullable[i]:
                        raise BadRequestError(
                            f"{where}'{name}' is missing (null) in row {row}, and feature '{name}' "
                            "does not allow missing values"
                        )
                elif not isinstance(value, str):
                    raise BadRequestError(
                        f"{where}'{name}' is categorical: expected a string, got {value!r}"
                    )
            if missing:
                column = column.copy()
                column[missing] = math.nan  # what pandas (and so the trainer) uses for missing
            out[name] = column
        else:
            values = (
                column if column.dtype == np.float64 else _objects_to_float(column.tolist(), name)
            )
            single = values.reshape(rows, 1)
            check_missing(single, _one(schema, i), where)
            out[name] = values
    return Batch(rows=rows, columns=out)


def _one(schema: Schema, i: int) -> Schema:
    return Schema([schema.features[i]], schema.max_rows)


def decode_v1_instances(instances: Any, schema: Schema) -> Batch:
    """KServe V1 ``instances``: records ``{feature: value}`` or rows in feature order."""
    if not isinstance(instances, list):
        raise BadRequestError("'instances' must be a list of records or rows")
    check_rows(len(instances), "'instances'", schema)
    width = len(schema.names)
    table: list[list[Any]] = []
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            if instance.keys() != schema.name_set:
                _explain_keys(i, instance, schema)
            table.append([instance[n] for n in schema.names])
        elif isinstance(instance, list):
            if len(instance) != width:
                raise BadRequestError(
                    f"instance {i} has {len(instance)} values; expected {width} in feature order"
                )
            table.append(instance)
        else:
            raise BadRequestError(f"instance {i} must be an object of feature values or a list")
    rows = len(table)
    if schema.numeric_only:
        flat = [v for row in table for v in row]
        try:
            matrix = numeric_array(flat, "instances", "FP64", rows * width).reshape(rows, width)
        except BadRequestError:
            _locate_non_number(flat, width, schema, "")
            raise
        check_missing(matrix, schema, "feature ")
        return Batch(rows=rows, matrix=matrix)
    cells = np.empty((rows, width), dtype=object)
    cells[:, :] = table
    columns = {n: cells[:, j] for j, n in enumerate(schema.names)}
    return columns_batch(columns, rows, schema, "feature ")


def _locate_non_number(flat: list[Any], width: int, schema: Schema, where: str) -> None:
    """Re-raises a numeric decoding failure with the row and feature of the culprit."""
    for position, value in enumerate(flat):
        if value is None or isinstance(value, bool | int | float):
            continue
        row, column = divmod(position, width)
        raise BadRequestError(
            f"{where}feature '{schema.names[column]}' in row {row} is {value!r}; it needs a number"
        )


def _explain_keys(i: int, instance: dict[str, Any], schema: Schema) -> None:
    missing = [n for n in schema.names if n not in instance]
    if missing:
        raise BadRequestError(f"instance {i} lacks feature(s) {_listing(missing)}")
    extra = [str(k) for k in instance if k not in schema.name_set]
    raise BadRequestError(f"instance {i} has unknown feature(s) {_listing(extra)}")


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
