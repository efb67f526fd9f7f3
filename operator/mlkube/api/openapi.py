"""Small constructors for OpenAPI v3 structural schemas, as CustomResourceDefinitions need them.

They keep the ``crd_*`` modules readable: every field is one call that carries its description,
so ``kubectl explain`` can teach each field, and no field can be added without one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Schema = dict[str, Any]


def _with(schema: Schema, **extra: Any) -> Schema:
    schema.update({key: value for key, value in extra.items() if value is not None})
    return schema


def string(
    description: str,
    *,
    enum: Iterable[str] | None = None,
    pattern: str | None = None,
    fmt: str | None = None,
    default: str | None = None,
    max_length: int | None = 253,
    min_length: int | None = None,
) -> Schema:
    return _with(
        {"type": "string", "description": description},
        enum=list(enum) if enum is not None else None,
        pattern=pattern,
        format=fmt,
        default=default,
        maxLength=max_length,
        minLength=min_length,
    )


def integer(
    description: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
    fmt: str | None = "int32",
) -> Schema:
    return _with(
        {"type": "integer", "description": description},
        format=fmt,
        minimum=minimum,
        maximum=maximum,
        default=default,
    )


def number(
    description: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    default: float | None = None,
) -> Schema:
    return _with(
        {"type": "number", "description": description},
        minimum=minimum,
        maximum=maximum,
        default=default,
    )


def boolean(description: str, *, default: bool | None = None) -> Schema:
    return _with({"type": "boolean", "description": description}, default=default)


def rule(expression: str, message: str, *, field_path: str | None = None) -> Schema:
    """A CEL ``x-kubernetes-validations`` rule; ``message`` must name the offending field."""
    return _with({"rule": expression, "message": message}, fieldPath=field_path)


def obj(
    description: str,
    properties: Mapping[str, Schema],
    *,
    required: Iterable[str] = (),
    rules: Iterable[Schema] = (),
    default: Mapping[str, Any] | None = None,
) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": dict(properties)}
    required_list = list(required)
    if required_list:
        schema["required"] = required_list
    rules_list = list(rules)
    if rules_list:
        schema["x-kubernetes-validations"] = rules_list
    if default is not None:
        schema["default"] = dict(default)
    return schema


def free_object(description: str) -> Schema:
    """An object whose keys the user chooses (estimator params): kept, not pruned."""
    return {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }


def map_of(description: str, values: Schema, *, max_properties: int | None = None) -> Schema:
    return _with(
        {"type": "object", "description": description, "additionalProperties": values},
        maxProperties=max_properties,
    )


def array(
    description: str,
    items: Schema,
    *,
    max_items: int | None = None,
    map_keys: Iterable[str] | None = None,
    list_type: str | None = None,
) -> Schema:
    schema: Schema = {"type": "array", "description": description, "items": items}
    keys = list(map_keys) if map_keys is not None else []
    if keys:
        schema["x-kubernetes-list-type"] = "map"
        schema["x-kubernetes-list-map-keys"] = keys
    elif list_type is not None:
        schema["x-kubernetes-list-type"] = list_type
    return _with(schema, maxItems=max_items)


def int_or_string(description: str) -> Schema:
    return {
        "description": description,
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }


def walk_fields(schema: Schema, path: str = "") -> Iterable[tuple[str, Schema]]:
    """Every (dotted path, schema) pair below ``schema``, for checks such as descriptions."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk_fields(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from walk_fields(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_fields(schema["additionalProperties"], f"{path}{{}}")
