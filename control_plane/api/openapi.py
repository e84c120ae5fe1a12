"""OpenAPI 3.1 from the routes themselves: request bodies are the pydantic models that validate them."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

F = TypeVar("F", bound=Callable[..., Any])
ERRORS = {"400": "Malformed request", "401": "Missing, invalid or revoked API key",
          "403": "The API key lacks the scope", "404": "No such object (or not yours)",
          "409": "Conflict", "413": "Body too large", "422": "Validation failed",
          "429": "Rate limited", "503": "A datastore is unreachable"}
_ID = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}
_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DESTINATION = {"type": "object", "required": ["type"], "properties": {
    "type": {"enum": ["url", "page", "chatbot", "knowledge_base", None]}, "url": _NULLABLE_STR,
    "page": _NULLABLE_STR, "chatbot": _NULLABLE_STR, "knowledge_base": _NULLABLE_STR}}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_PROGRESS = {"type": "object", "required": ["done", "total"], "properties": {
    "done": {"type": "integer"}, "total": {"type": "integer"}}}
_STATUS = {"enum": ["active", "inactive", "archived", None]}


def _object(kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    props = {"id": _ID, "object": {"const": kind}, **properties}
    return {"type": "object", "required": list(props), "properties": props}


COMPONENTS: dict[str, dict[str, Any]] = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}}}},
    "QRCode": _object("qr_code", {
        "livemode": {"type": "boolean"}, "kind": {"enum": ["dynamic", "static"]}, "type": {"type": "string"},
        "name": {"type": "string"}, "slug": _NULLABLE_STR, "domain": _NULLABLE_STR, "short_url": _NULLABLE_STR,
        "group_id": _NULLABLE_STR, "status": _STATUS, "destination": _DESTINATION,
        "content": {"type": ["object", "null"]}, "url_params": _MAP, "properties": _MAP,
        "design": {"type": ["object", "null"]}, "folder_id": _NULLABLE_STR,
        "tags": {"type": "array", "items": {"type": "string"}}, "resolved": {"type": ["object", "null"]},
        "image_url": _NULLABLE_STR, "download_url": {"type": "string"}, "preview_url": {"type": "string"},
        "scan_count": {"type": ["integer", "null"]}, "created_at": _TIME, "updated_at": _TIME}),
    "QRGroup": _object("qr_group", {
        "livemode": {"type": "boolean"}, "name": {"type": "string"}, "description": {"type": "string"},
        "status": _STATUS, "destination": _DESTINATION, "url_params": _MAP, "properties": _MAP,
        "code_count": {"type": "integer"}, "created_at": _TIME, "updated_at": _TIME}),
    "Folder": _object("folder", {"livemode": {"type": "boolean"}, "name": {"type": "string"},
                                 "created_at": _TIME, "updated_at": _TIME}),
    "Domain": _object("domain", {"livemode": {"type": "boolean"}, "hostname": {"type": "string"},
                                 "created_at": _TIME}),
    "ApiKey": _object("api_key", {"livemode": {"type": "boolean"}, "name": {"type": "string"},
                                  "prefix": {"type": "string"}, "last4": {"type": "string"},
                                  "scopes": {"type": "array", "items": {"type": "string"}},
                                  "created_at": _TIME, "revoked_at": {"type": ["string", "null"]}}),
    "Event": _object("event", {"type": {"type": "string"}, "livemode": {"type": "boolean"}, "created_at": _TIME,
                               "data": {"type": "object", "required": ["object"]}}),
    "WebhookEndpoint": _object("webhook_endpoint", {
        "livemode": {"type": "boolean"}, "url": {"type": "string"},
        "events": {"type": "array", "items": {"type": "string"}}, "description": {"type": "string"},
        "enabled": {"type": "boolean"}, "disabled_reason": {"enum": ["gone", "failing", None]},
        "created_at": _TIME, "updated_at": _TIME}),
    "WebhookDelivery": _object("webhook_delivery", {
        "endpoint_id": _ID, "event_id": _ID, "event_type": _NULLABLE_STR,
        "status": {"enum": ["pending", "succeeded", "failed"]}, "attempt_count": {"type": "integer"},
        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": _TIME,
        "updated_at": _TIME, "attempts": {"type": "array", "items": {"type": "object", "required": [
            "attempted_at", "status_code", "latency_ms", "error", "response_excerpt"], "properties": {
            "attempted_at": _TIME, "status_code": {"type": ["integer", "null"]}, "latency_ms": {"type": "integer"},
            "error": _NULLABLE_STR, "response_excerpt": {"type": "string"}}}}}),
    "MapItem": {"type": "object", "required": ["object", "key", "value"], "properties": {
        "object": {"enum": ["url_param", "property"]}, "key": {"type": "string"}, "value": {"type": "string"}}},
    "ScanAnalytics": {"type": "object", "required": ["object", "since", "until", "group_by", "totals", "breakdowns",
                                                     "timeseries"], "properties": {
        "object": {"const": "scan_analytics"}, "qr_code_id": {"type": "string"}, "qr_group_id": {"type": "string"},
        "since": _TIME, "until": _TIME, "group_by": {"enum": ["day", "hour"]},
        "totals": {"type": "object", "required": ["total_scans", "unique_scans", "unique_ips"], "properties": {
            "total_scans": {"type": "integer"}, "unique_scans": {"type": "integer"},
            "unique_ips": {"type": "integer"}}},
        "breakdowns": {"type": "object", "additionalProperties": {"type": "array", "items": {
            "type": "object", "required": ["scans"], "properties": {"scans": {"type": "integer"}}}}},
        "timeseries": {"type": "array", "items": {"type": "object", "required": ["bucket", "scans", "uniques"],
                                                  "properties": {"bucket": _TIME, "scans": {"type": "integer"},
                                                                 "uniques": {"type": "integer"}}}}}},
    "Export": _object("export", {
        "livemode": {"type": "boolean"}, "status": {"enum": ["queued", "running", "succeeded", "failed"]},
        "format": {"enum": ["pdf_sheet", "zip", "codes_csv", "scans_csv"]}, "progress": _PROGRESS,
        "file_url": _NULLABLE_STR, "signed_url": _NULLABLE_STR, "file_name": _NULLABLE_STR,
        "file_size": {"type": ["integer", "null"]}, "error": {"type": ["object", "null"]}, "created_at": _TIME,
        "finished_at": _NULLABLE_TIME, "expires_at": _NULLABLE_TIME}),
    "Import": _object("import", {
        "livemode": {"type": "boolean"}, "status": {"enum": ["queued", "running", "succeeded", "failed"]},
        "dry_run": {"type": "boolean"}, "progress": _PROGRESS, "error": {"type": ["object", "null"]},
        "result": {"type": ["object", "null"], "properties": {"created": {"type": "integer"}, "errors": {
            "type": "array", "items": {"type": "object", "required": ["row", "field", "message"], "properties": {
                "row": {"type": "integer"}, "field": {"type": "string"}, "message": {"type": "string"}}}}}},
        "created_at": _TIME, "finished_at": _NULLABLE_TIME, "expires_at": _NULLABLE_TIME}),
    "Usage": {"type": "object", "required": ["object", "plan", "qr_generated"], "properties": {
        "object": {"const": "usage"}, "plan": {"type": "string"}, "period_start": _TIME, "period_end": _TIME,
        "qr_generated": {"type": "integer"}, "included": {"type": ["integer", "null"]},
        "overage": {"type": "integer"}, "overage_cost_usd": {"type": "number"}}},
}


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
    returns: str | None = None  # component name; None for an empty response
    many: bool = False  # a list envelope of `returns`
    also: tuple[int, ...] = ()  # other success statuses with the same body
    extra_errors: tuple[int, ...] = ()
    media: tuple[str, ...] = ()  # binary responses (images) instead of a JSON `returns`
    body_media: str | None = None  # a request body that is a file of this type, not JSON


def operation(summary: str, scope: str, **details: Any) -> Callable[[F], F]:
    """Attach the OpenAPI description of a route handler to it."""

    def mark(handler: F) -> F:
        handler.__openapi__ = Operation(summary, scope, **details)  # type: ignore[attr-defined]
        return handler

    return mark


def _response(op: Operation) -> dict[str, Any]:
    if op.media:
        binary = {"schema": {"type": "string", "format": "binary"}}
        return {"description": "Success", "content": {media: binary for media in op.media}}
    if op.returns is None:
        return {"description": "Done"}
    schema: dict[str, Any] = {"$ref": f"#/components/schemas/{op.returns}"}
    if op.many:
        schema = {"type": "object", "required": ["object", "data", "total"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": schema}, "total": {"type": "integer"},
            "limit": {"type": "integer"}, "offset": {"type": "integer"}, "has_more": {"type": "boolean"}}}
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
    schemas = dict(COMPONENTS)
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for route in routes:
        op: Operation | None = getattr(getattr(route, "endpoint", None), "__openapi__", None)
        if not isinstance(route, Route) or op is None:
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            responses: dict[str, Any] = {str(code): _response(op) for code in (op.status, *op.also)}
            for code in sorted({*ERRORS, *map(str, op.extra_errors)}):
                responses[code] = {"description": ERRORS.get(code, "Error"), "content": problem}
            entry: dict[str, Any] = {
                "summary": op.summary, "operationId": f"{method.lower()}{path}".replace("/", "_"),
                "security": [{"bearer": []}], "description": f"Scope: `{op.scope}`.",
                "parameters": _path_parameters(route.path) + _query_parameters(op.query) + (
                    [{"name": "Idempotency-Key", "in": "header", "required": False,
                      "schema": {"type": "string", "minLength": 1, "maxLength": 255}}] if method == "POST" else []),
                "responses": responses,
            }
            if op.body is not None:
                schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[op.body.__name__] = schema
                entry["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
            if op.body_media is not None:
                entry["requestBody"] = {"required": True, "content": {op.body_media: {"schema": {"type": "string"}}}}
            paths.setdefault(path, {})[method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "scanroute", "version": version,
                 "description": "Dynamic QR codes for print at volume. Errors are RFC 9457 problem+json."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
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
