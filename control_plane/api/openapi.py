"""OpenAPI 3.1 from the routes themselves, with no schema written by hand.

Request bodies and query strings are the pydantic models that validate them; responses are the typed
objects (`…Public`) that the services build, turned into JSON Schema by pydantic.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter
from starlette.routing import BaseRoute, Route

from control_plane.services.listing import ListEnvelope
from shared.problems import ProblemDocument

F = TypeVar("F", bound=Callable[..., Any])
ERRORS = {"400": "Malformed request", "401": "Missing, invalid or revoked API key",
          "403": "The API key lacks the scope", "404": "No such object (or not yours)",
          "409": "Conflict", "413": "Body too large", "422": "Validation failed",
          "429": "Rate limited", "503": "A datastore is unreachable"}
OTHER_ERRORS = {"402": "The plan's monthly quota is used up", "412": "The object changed since the version in If-Match"}


@dataclass(frozen=True)
class Query:
    name: str
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    summary: str
    scope: str
    body: type[BaseModel] | None = None
    query: Sequence[Query] | type[BaseModel] = ()  # a model: its fields are the query parameters
    status: int = 200
    returns: type[Any] | None = None  # the object answered (a TypedDict or model); None for an empty response
    many: bool = False  # a list envelope of `returns`
    also: tuple[int, ...] = ()  # other success statuses with the same body
    extra_errors: tuple[int, ...] = ()
    media: tuple[str, ...] = ()  # binary responses (images) instead of a JSON `returns`
    conditional: bool = False  # takes If-Match: "<version>" (412 when the object moved on)
    body_media: str | None = None  # a request body that is a file of this media type (imports), not JSON
    body_pattern: str | None = None  # what such a file must match (a request that does not is a 422)
    notes: str = ""  # appended to the description: limits, side effects
    error_details: tuple[tuple[int, str], ...] = ()  # what an error status means for this operation


def operation(summary: str, scope: str, **details: Any) -> Callable[[F], F]:
    """Attach the OpenAPI description of a route handler to it."""

    def mark(handler: F) -> F:
        handler.__openapi__ = Operation(summary, scope, **details)  # type: ignore[attr-defined]
        return handler

    return mark


class Components:
    """The schemas the document refers to, each generated once from its Python type."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, type_: type[Any], name: str | None = None, *, mode: str = "serialization") -> dict[str, str]:
        name = name or type_.__name__
        if name not in self.schemas:
            schema = TypeAdapter(type_).json_schema(ref_template="#/components/schemas/{model}",
                                                    mode=mode)  # type: ignore[arg-type]
            self.schemas.update(schema.pop("$defs", {}))
            self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _response(op: Operation, components: Components) -> dict[str, Any]:
    if op.media:
        binary = {"schema": {"type": "string", "format": "binary"}}
        return {"description": "Success", "content": {media: binary for media in op.media}}
    if op.returns is None:
        return {"description": "Done"}
    if op.many:
        schema = components.ref(ListEnvelope[op.returns], f"{op.returns.__name__}List")  # type: ignore[name-defined]
    else:
        schema = components.ref(op.returns)
    return {"description": "Success", "content": {"application/json": {"schema": schema}}}


def _query_parameters(query: Sequence[Query] | type[BaseModel]) -> list[dict[str, Any]]:
    if not isinstance(query, type):
        return [{"name": q.name, "in": "query", "required": False, "schema": q.schema, "description": q.description}
                for q in query]
    parameters = []
    for name, schema in query.model_json_schema()["properties"].items():
        schema = dict(schema)
        description = schema.pop("description", "")
        schema.pop("title", None)
        # An absent parameter is the `None` of an optional field: `?status=null` is not a value.
        options = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"]
        if len(options) == 1:
            schema.update(options[0])
        elif options:
            schema["anyOf"] = options
        if schema.get("default", 0) is None:
            del schema["default"]
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema,
                           "description": description})
    return parameters


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]


def build_spec(routes: Sequence[BaseRoute], *, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components = Components()
    problem = {"application/problem+json": {"schema": components.ref(ProblemDocument, "Problem")}}
    for route in routes:
        op: Operation | None = getattr(getattr(route, "endpoint", None), "__openapi__", None)
        if not isinstance(route, Route) or op is None:
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            responses: dict[str, Any] = {str(code): _response(op, components) for code in (op.status, *op.also)}
            described = {**ERRORS, **OTHER_ERRORS, **{str(code): text for code, text in op.error_details}}
            for code in sorted({*ERRORS, *map(str, op.extra_errors), *(["412"] if op.conditional else [])}):
                responses[code] = {"description": described.get(code, "Error"), "content": problem}
            entry: dict[str, Any] = {
                "summary": op.summary, "operationId": f"{method.lower()}{path}".replace("/", "_"),
                "security": [{"bearer": []}],
                "description": f"Scope: `{op.scope}`." + (f" {op.notes}" if op.notes else ""),
                "parameters": _path_parameters(route.path) + _query_parameters(op.query) + (
                    [{"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "minLength": 1, "maxLength": 255}}] if method == "POST" else []) + (
                    [{"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
                      "description": 'the version last read, as "3": 412 if the object changed since'}]
                    if op.conditional else []),
                "responses": responses,
            }
            if op.body is not None:
                entry["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": components.ref(op.body, mode="validation")}}}
            if op.body_media is not None:
                file: dict[str, Any] = {"type": "string"} | ({"pattern": op.body_pattern} if op.body_pattern else {})
                entry["requestBody"] = {"required": True, "content": {op.body_media: {"schema": file}}}
            paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "scanroute", "version": version,
                 "description": "Dynamic QR codes for print at volume. Errors are RFC 9457 problem+json."},
        "paths": paths,
        "components": {"schemas": components.schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "qr_live_… or qr_test_… API key"}}},
    }


def docs_page(spec: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation (no external assets)."""
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body_name = body.get("$ref", "").rsplit("/", 1)[-1]
            rows.append(f"<tr><td><b>{method.upper()}</b></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{html.escape(op['description'])}</td>"
                        f"<td>{html.escape(params)}</td><td>{html.escape(body_name)}</td></tr>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>scanroute API</title><style>"
            "body{font:15px/1.5 system-ui,sans-serif;margin:2rem;color:#1d2330}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:.35rem .6rem;text-align:left;vertical-align:top}"
            "code{font-size:14px}</style></head><body><h1>scanroute API</h1>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1). Authenticate with "
            "<code>Authorization: Bearer qr_live_…</code>. Errors are <code>application/problem+json</code>.</p>"
            "<table><tr><th>method</th><th>path</th><th>what</th><th>auth</th><th>query</th><th>body</th></tr>"
            + "".join(rows) + "</table></body></html>")
