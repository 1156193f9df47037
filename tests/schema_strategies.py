"""Hypothesis strategies from JSON Schema: the subset the project's OpenAPI documents use.

(hypothesis-jsonschema 0.23, the package for this, no longer runs on current hypothesis.)
Supported: ``$ref`` into ``#/components/schemas``, ``type`` (object, array, string, integer,
number, boolean, null, or a list of them), ``anyOf``/``oneOf``, ``const``, ``enum``,
``not: {const}``, ``properties``/``required``/``additionalProperties`` (bool or schema),
``items``/``minItems``/``maxItems``/``uniqueItems``, ``pattern``/``minLength``/``maxLength``,
``minimum``/``maximum``. Anything else in a schema is a test error, not silently ignored.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_IGNORED = {"title", "description", "default", "examples", "format", "discriminator"}
_KNOWN = _IGNORED | {
    "$ref",
    "type",
    "anyOf",
    "oneOf",
    "const",
    "enum",
    "not",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
}
_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def from_schema(schema: dict[str, Any], components: dict[str, Any] | None = None) -> Any:
    components = components or {}
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"unsupported JSON Schema keywords: {sorted(unknown)}")
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return from_schema(components["schemas"][name], components)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, components) for s in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": k}, components) for k in kind])
    strategy = _typed(kind, schema, components)
    if "not" in schema:
        forbidden = schema["not"]
        if set(forbidden) != {"const"}:
            raise ValueError("only not: {const} is supported")
        strategy = strategy.filter(lambda v: v != forbidden["const"])
    return strategy


def _typed(kind: str | None, schema: dict[str, Any], components: dict[str, Any]) -> Any:
    if kind is None:
        return _ANY_JSON
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "string":
        return _string(schema)
    if kind == "array":
        items = from_schema(schema.get("items", {}), components)
        return st.lists(
            items,
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
            unique_by=(lambda v: repr(v)) if schema.get("uniqueItems") else None,
        )
    if kind == "object":
        return _object(schema, components)
    raise ValueError(f"unsupported type {kind!r}")


def _string(schema: dict[str, Any]) -> Any:
    low, high = schema.get("minLength", 0), schema.get("maxLength")
    if "pattern" in schema:
        text = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        text = st.text(min_size=low, max_size=min(high if high is not None else 40, 40))
    return text.filter(lambda t: len(t) >= low and (high is None or len(t) <= high))


def _object(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    properties = schema.get("properties", {})
    required = set(schema.get("required", ()))
    extra = schema.get("additionalProperties", True)

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, sub in properties.items():
            if name in required or draw(st.booleans()):
                out[name] = draw(from_schema(sub, components))
        if extra is not False:
            values = _ANY_JSON if extra is True else from_schema(extra, components)
            more = draw(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3))
            out.update({k: v for k, v in more.items() if k not in properties})
        return out

    return build()
