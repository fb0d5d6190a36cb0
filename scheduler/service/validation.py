"""The subset of JSON Schema the route table uses, checked on request bodies and query
parameters: ``validate`` raises a ``PayloadError`` naming the offending field.

The route table's schemas are also the published OpenAPI document, so what is checked here
is what the spec promises: types, ``enum``, string lengths, ``pattern`` and RFC 3339
``date-time``, number bounds, array sizes and items, required and unknown object fields, and
``anyOf``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any

from scheduler.service.errors import PayloadError
from scheduler.service.payload import parse_time_ns


def _is_type(v: Any, t: str) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    raise ValueError(f"schema type {t!r} not supported")


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` as JSON Schema (ECMA-262) means it: ``$`` ends the string.

    Python's ``$`` also matches before a final newline, so ``^[a-z]+$`` would let
    ``"p0-risk\n"`` through; a trailing ``$`` becomes ``\\Z``.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def validate(value: Any, schema: Mapping[str, Any], path: str = "body") -> None:
    """Check ``value`` against the JSON Schema subset the table uses; ``PayloadError`` names the field."""
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                validate(value, option, path)
                break
            except PayloadError as e:
                errors.append(str(e).removeprefix(f"{path}: "))
        else:
            raise PayloadError(f"{path}: {' or '.join(errors)}")
    t = schema.get("type")
    if t is not None and not _is_type(value, t):
        raise PayloadError(f"{path}: must be of type {t}")
    if "enum" in schema and value not in schema["enum"]:
        raise PayloadError(f"{path}: must be one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise PayloadError(f"{path}: too short")
        if len(value) > schema.get("maxLength", 1 << 30):
            raise PayloadError(f"{path}: too long")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise PayloadError(f"{path}: must match {schema['pattern']}")
        if schema.get("format") == "date-time":
            parse_time_ns(value, path)  # RFC 3339, as Alertmanager and the spec write it
    if t in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise PayloadError(f"{path}: must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise PayloadError(f"{path}: must be <= {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise PayloadError(f"{path}: must have at least {schema['minItems']} item(s)")
        if len(value) > schema.get("maxItems", 1 << 30):
            raise PayloadError(f"{path}: must have at most {schema['maxItems']} item(s)")
        if "items" in schema:
            for i, v in enumerate(value):
                validate(v, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties", {})
        for k in schema.get("required", ()):
            if k not in value:
                raise PayloadError(f"{path}.{k}: is required")
        if len(value) < schema.get("minProperties", 0):
            raise PayloadError(f"{path}: must name at least {schema['minProperties']} field(s)")
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                validate(v, props[k], f"{path}.{k}")
            elif extra is False:
                raise PayloadError(f"{path}.{k}: unknown field")
            elif isinstance(extra, Mapping):
                validate(v, extra, f"{path}.{k}")


def coerce_query(raw: str, schema: Mapping[str, Any], name: str) -> Any:
    """A query-string value as its schema's type, validated."""
    value: Any = raw
    if schema.get("type") == "integer":
        if not re.fullmatch(r"-?\d{1,12}", raw):
            raise PayloadError(f"{name}: must be an integer")
        value = int(raw)
    validate(value, schema, name)
    return value
