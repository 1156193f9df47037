"""Requests generated from an API's own /openapi.json (hypothesis, tests/schema_strategies.py).

For every operation: *valid* requests draw each parameter and the JSON body from their
schemas; *invalid* ones take a valid request and break one thing — a parameter given a value
its schema refuses, a required parameter left out, a body property removed, retyped or
added where the schema forbids it. The checks (:func:`check`): never a 5xx; a valid request
is never refused as malformed (the API says which refusals mean that, and which documented
rules the schema cannot state); an invalid one is always refused with a 4xx.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st

from schema_strategies import from_schema

HTTP_METHODS = ("get", "post", "put", "delete", "patch")


@dataclass(frozen=True)
class Operation:
    path: str
    method: str
    parameters: tuple[dict[str, Any], ...]
    body: dict[str, Any] | None
    components: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.method.upper()} {self.path}"


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, bytes] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False
    broken: str = ""

    def send(self, http: httpx.Client) -> httpx.Response:
        kwargs: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.has_body:
            kwargs["json"] = self.body
        return http.request(self.method.upper(), self.path, **kwargs)


def operations(doc: dict[str, Any]) -> list[Operation]:
    out = []
    for path, item in sorted(doc["paths"].items()):
        for method in HTTP_METHODS:
            if method not in item:
                continue
            op = item[method]
            body = None
            if "requestBody" in op:
                body = op["requestBody"]["content"]["application/json"]["schema"]
            out.append(
                Operation(
                    path,
                    method,
                    tuple(op.get("parameters", ())),
                    body,
                    doc.get("components", {}),
                )
            )
    return out


def _rooted(op: Operation, schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "components": op.components} if op.components else schema


def _draw_schema(op: Operation, schema: dict[str, Any]) -> Any:
    return from_schema(schema, op.components)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_valid(schema: dict[str, Any], text: str) -> bool:
    """Whether a parameter's text satisfies its schema, as the server parses it."""
    if "anyOf" in schema:
        return any(param_valid(s, text) for s in schema["anyOf"])
    kind = schema.get("type")
    value: Any = text
    if kind == "integer":
        if not re.fullmatch(r"-?[0-9]+", text):
            return False
        value = int(text)
    elif kind == "number":
        if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text):
            return False
        value = float(text)
    elif kind == "null":
        return False
    if "minimum" in schema and value < schema["minimum"]:
        return False
    if "maximum" in schema and value > schema["maximum"]:
        return False
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        if "minLength" in schema and len(value) < schema["minLength"]:
            return False
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    return not ("not" in schema and "const" in schema["not"] and value == schema["not"]["const"])


def _param_schema(parameter: dict[str, Any]) -> dict[str, Any]:
    schema = dict(parameter.get("schema", {}))
    if "anyOf" in schema:  # Optional[X]: drop the null branch, a query string is never null
        schema["anyOf"] = [s for s in schema["anyOf"] if s.get("type") != "null"]
    return schema


def valid_request(op: Operation, adjust: Callable[[Request], None] | None = None) -> Any:
    @st.composite
    def build(draw: Any) -> Request:
        request = Request(op.method, op.path)
        path = op.path
        for parameter in op.parameters:
            schema = _param_schema(parameter)
            where = parameter["in"]
            if where != "path" and not parameter.get("required") and draw(st.booleans()):
                continue
            text = _text(draw(_draw_schema(op, schema)))
            if where == "path":
                path = path.replace("{" + parameter["name"] + "}", quote(text, safe=""))
            elif where == "query":
                request.params[parameter["name"]] = text
            elif where == "header":
                request.headers[parameter["name"]] = text.encode("latin-1")
        request.path = path
        if op.body is not None:
            request.body = draw(_draw_schema(op, op.body))
            request.has_body = True
        if adjust is not None:
            adjust(request)
        return request

    return build()


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=140,
).filter(lambda t: t == t.strip(" "))  # what HTTP can carry: no padding around a value


def _schema_of(op: Operation, schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = ref.rsplit("/", 1)[-1]
    return _schema_of(op, op.components["schemas"][name])


def invalid_request(op: Operation, adjust: Callable[[Request], None] | None = None) -> Any:
    """A valid request with exactly one thing broken (see the module docstring)."""

    @st.composite
    def build(draw: Any) -> Request:
        request: Request = draw(valid_request(op, adjust))
        choices: list[str] = []
        for parameter in op.parameters:
            choices.append(f"value:{parameter['in']}:{parameter['name']}")
            if parameter.get("required") and parameter["in"] != "path":
                choices.append(f"drop:{parameter['in']}:{parameter['name']}")
        body = _schema_of(op, op.body) if op.body is not None else None
        if body is not None:
            choices.append("body:retype")
            if body.get("type") == "object" and isinstance(request.body, dict):
                if body.get("additionalProperties") is False:
                    choices.append("body:extra")
                for name in body.get("required", ()):
                    choices.append(f"body:drop:{name}")
                    choices.append(f"body:junk:{name}")
        if not choices:
            return request
        choice = draw(st.sampled_from(sorted(choices)))
        request.broken = choice
        kind, _, rest = choice.partition(":")
        if kind in ("value", "drop"):
            where, _, name = rest.partition(":")
            parameter = next(p for p in op.parameters if p["name"] == name and p["in"] == where)
            schema = _param_schema(parameter)
            if kind == "drop":
                (request.headers if where == "header" else request.params).pop(name, None)
                return request
            alphabet = _HEADER_TEXT if where == "header" else st.text(max_size=40)
            text = draw(alphabet.filter(lambda t: not param_valid(schema, t)))
            if where == "path":
                if not text or text in (".", ".."):
                    text = "\x00" + text  # an empty or dot segment would route elsewhere
                request.path = _replace_path_param(op, request, name, quote(text, safe=""))
            elif where == "query":
                request.params[name] = text
            else:
                request.headers[name] = text.encode("latin-1")
            return request
        if choice == "body:retype":
            request.body = draw(_JUNK.filter(lambda v: not isinstance(v, dict)))
        elif choice == "body:extra":
            request.body = {**request.body, "unexpected_field_for_fuzz": 1}
        elif choice.startswith("body:drop:"):
            request.body = {k: v for k, v in request.body.items() if k != rest.split(":")[1]}
        elif choice.startswith("body:junk:"):
            name = rest.split(":")[1]
            prop = _schema_of(op, body["properties"].get(name, {})) if body else {}
            junk = draw(_JUNK.filter(lambda v: not _json_valid(op, prop, v)))
            request.body = {**request.body, name: junk}
        return request

    return build()


def _json_valid(op: Operation, schema: dict[str, Any], value: Any) -> bool:
    import jsonschema

    try:
        jsonschema.validate(value, _rooted(op, schema))
    except jsonschema.ValidationError:
        return False
    return True


def _replace_path_param(op: Operation, request: Request, name: str, text: str) -> str:
    # Rebuild the path from the template with the other parameters' drawn values.
    template = op.path.split("/")
    actual = request.path.split("/")
    out = []
    for t, a in zip(template, actual, strict=False):
        out.append(text if t == "{" + name + "}" else a)
    return "/".join(out)


def check(
    op: Operation,
    request: Request,
    response: httpx.Response,
    *,
    valid: bool,
    malformed: Callable[[httpx.Response], bool],
    known_500: Callable[[Request], bool] = lambda _: False,
    seen_known: list[str] | None = None,
) -> None:
    where = f"{op.name} {request.broken or 'valid'}: {request!r} -> {response.status_code} "
    where += response.text[:300]
    if response.status_code >= 500:
        if known_500(request):
            if seen_known is not None:
                seen_known.append(where)
            return
        raise AssertionError(f"5xx: {where}")
    if valid:
        assert not malformed(response), f"a schema-valid request refused as malformed: {where}"
    else:
        assert 400 <= response.status_code < 500, f"an invalid request was not refused: {where}"
