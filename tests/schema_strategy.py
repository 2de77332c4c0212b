"""Hypothesis strategies for request bodies from a JSON schema (the subset FastAPI/pydantic emit for our OpenAPI
spec: $ref, anyOf/oneOf/allOf, object, array, string, integer, number, boolean, null, enum, const, bounds).
hypothesis-jsonschema would do this, but it relies on Hypothesis internals that current Hypothesis removed."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st


def from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> st.SearchStrategy:
    """Values valid under ``schema`` (mostly: bounds are honoured, formats and patterns are not); ``root``
    resolves ``#/...`` references (defaults to ``schema``)."""
    root = root or schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return st.deferred(lambda: from_schema(target, root))
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, root) for s in schema[key]])
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part)
        return from_schema(merged, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, root) for k in kind])
    return _TYPES.get(kind, _any)(schema, root)


def _object(schema: dict, root: dict) -> st.SearchStrategy:
    props = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = {k: from_schema(v, root) for k, v in props.items() if k in required}
    optional = {k: from_schema(v, root) for k, v in props.items() if k not in required}
    extra = schema.get("additionalProperties")
    base = st.fixed_dictionaries(fixed, optional=optional)
    if isinstance(extra, dict):
        more = st.dictionaries(st.text(max_size=6).filter(lambda k: k not in props), from_schema(extra, root),
                               max_size=3)
        return st.tuples(base, more).map(lambda t: {**t[1], **t[0]})
    return base


def _array(schema: dict, root: dict) -> st.SearchStrategy:
    items = from_schema(schema.get("items", {}), root)
    low = schema.get("minItems", 0)
    return st.lists(items, min_size=low, max_size=min(schema.get("maxItems", low + 4), low + 4))


def _number(schema: dict, root: dict, integer: bool = False) -> st.SearchStrategy:
    low, high = schema.get("minimum"), schema.get("maximum")
    if "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + (1 if integer else 1e-9)
    if "exclusiveMaximum" in schema:
        high = schema["exclusiveMaximum"] - (1 if integer else 1e-9)
    if integer:
        return st.integers(None if low is None else int(low), None if high is None else int(high))
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _string(schema: dict, root: dict) -> st.SearchStrategy:
    return st.text(min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 12), 12))


def _any(schema: dict, root: dict) -> st.SearchStrategy:
    return st.none() | st.booleans() | st.integers() | st.text(max_size=8)


_TYPES = {
    "object": _object, "array": _array, "string": _string, "boolean": lambda s, r: st.booleans(),
    "null": lambda s, r: st.none(), "number": _number, "integer": lambda s, r: _number(s, r, integer=True),
}
