"""`/v1/webhook-endpoints`: where an organisation's events are sent, and how each delivery went."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, not_found, owned_page, page, parse_body
from control_plane.api.openapi import PAGE, Query, operation
from control_plane.services.keys import ApiKey
from control_plane.webhooks.schedule import ROTATION_GRACE
from control_plane.webhooks.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from control_plane.webhooks.signing import new_secret
from shared.ids import new_id
from shared.outbound import OutboundRefused, resolve_public_address
from shared.problems import Problem, field_error
from shared.settings import OutboundSettings
from shared.times import timestamp

TEST_EVENT_TYPE = "webhook_endpoint.test"
COLUMNS = "id, livemode, url, events, description, enabled, disabled_reason, created_at, updated_at"
OWNED = "org_id = $1 AND livemode = $2 AND id = $3"
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
# Deliveries that wait for a disabled endpoint have no next attempt; enabling it makes them due at once.
# SKIP LOCKED: rows a dispatcher is sending right now get their next attempt from it; waiting for them
# while holding the endpoint row could deadlock with that dispatcher.
UNPARK = """
UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' AND next_attempt_at IS NULL
    FOR UPDATE SKIP LOCKED)"""
DELIVERY_COLUMNS = ("id, endpoint_id, event_id, status, attempt_count, next_attempt_at, created_at, updated_at,"
                    " coalesce(payload->>'type', (SELECT type FROM events e WHERE e.id = event_id)) AS event_type")
PARK = """
UPDATE webhook_deliveries SET next_attempt_at = NULL WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending' FOR UPDATE SKIP LOCKED)"""


def endpoint_object(row: asyncpg.Record, secret: str | None = None) -> dict[str, Any]:
    obj = {"id": row["id"], "object": "webhook_endpoint", "livemode": row["livemode"], "url": row["url"],
           "events": list(row["events"]), "description": row["description"], "enabled": row["enabled"],
           "disabled_reason": row["disabled_reason"], "created_at": timestamp(row["created_at"]),
           "updated_at": timestamp(row["updated_at"])}
    if secret is not None:
        obj["secret"] = secret
    return obj


async def checked_url(request: Request, url: str) -> str:
    outbound: OutboundSettings = request.app.state.settings.outbound
    try:
        await resolve_public_address(url, allowed_hosts=outbound.allowed_hosts, allow_http=outbound.allow_http)
    except OutboundRefused as exc:
        raise field_error("url", str(exc)) from None
    return url


# NO KEY UPDATE: a change to an endpoint must not hold up the fan-out's foreign-key checks against it.
async def fetch_endpoint(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], key: ApiKey, endpoint_id: str,
                         *, lock: bool = False) -> asyncpg.Record:
    row: asyncpg.Record | None = await db.fetchrow(
        f"SELECT {COLUMNS} FROM webhook_endpoints WHERE {OWNED}{' FOR NO KEY UPDATE' if lock else ''}",
        key.org_id, key.livemode, endpoint_id)
    if row is None:
        raise not_found("webhook endpoint")
    return row


@operation("Create a webhook endpoint (the secret is shown once)", "webhooks:write",
           body=WebhookEndpointCreate, status=201, returns="WebhookEndpoint")
async def create_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    body = await parse_body(request, WebhookEndpointCreate)
    url = await checked_url(request, body.url)
    secret = new_secret()
    row = await request.app.state.db.fetchrow(
        "INSERT INTO webhook_endpoints (id, org_id, livemode, url, events, description, enabled, secret)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}",
        new_id("we"), key.org_id, key.livemode, url, body.events, body.description, body.enabled, secret)
    return json_response(endpoint_object(row, secret), 201)


@operation("List webhook endpoints", "webhooks:read", returns="WebhookEndpoint", many=True, query=PAGE)
async def list_endpoints(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    rows, total, limit, offset = await owned_page(request, "webhook_endpoints", (key.org_id, key.livemode))
    return list_response([endpoint_object(r) for r in rows], total, limit, offset)


@operation("Retrieve a webhook endpoint", "webhooks:read", returns="WebhookEndpoint")
async def get_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    row = await fetch_endpoint(request.app.state.db, key, request.path_params["endpoint_id"])
    return json_response(endpoint_object(row))


@operation("Update a webhook endpoint", "webhooks:write", body=WebhookEndpointUpdate,
           returns="WebhookEndpoint")
async def update_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    body = await parse_body(request, WebhookEndpointUpdate)
    fields = body.model_fields_set
    for name in ("url", "events", "enabled", "description"):
        if name in fields and getattr(body, name) is None:
            raise field_error(name, "cannot be null")
    url = await checked_url(request, body.url) if body.url is not None else None
    async with request.app.state.db.acquire() as conn, conn.transaction():
        current = await fetch_endpoint(conn, key, request.path_params["endpoint_id"], lock=True)
        enabled = current["enabled"] if body.enabled is None else body.enabled
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET url = $2, events = $3, description = $4, enabled = $5,"
            " disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,"
            " failing_since = CASE WHEN $5 AND NOT enabled THEN NULL ELSE failing_since END,"
            f" updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
            current["id"], url or current["url"], body.events or current["events"],
            current["description"] if body.description is None else body.description, enabled)
        if enabled != current["enabled"]:
            await conn.execute(UNPARK if enabled else PARK, current["id"])
    return json_response(endpoint_object(row))


@operation("Delete a webhook endpoint and its delivery log", "webhooks:write", status=204)
async def delete_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    deleted = await request.app.state.db.fetchval(
        f"DELETE FROM webhook_endpoints WHERE {OWNED} RETURNING id", key.org_id, key.livemode,
        request.path_params["endpoint_id"])
    if deleted is None:
        raise not_found("webhook endpoint")
    return Response(status_code=204)


@operation("Rotate the signing secret (the old one signs too for 24 h)", "webhooks:write",
           returns="WebhookEndpoint")
async def rotate_secret(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    secret = new_secret()
    async with request.app.state.db.acquire() as conn, conn.transaction():
        current = await fetch_endpoint(conn, key, request.path_params["endpoint_id"], lock=True)
        # Only the latest previous secret is kept: rotating twice within the grace period drops the oldest.
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,"
            " previous_secret_expires_at = now() + $3::interval, updated_at = now()"
            f" WHERE id = $1 RETURNING {COLUMNS}, previous_secret_expires_at",
            current["id"], secret, ROTATION_GRACE)
    obj = endpoint_object(row, secret)
    obj["previous_secret_expires_at"] = timestamp(row["previous_secret_expires_at"])
    return json_response(obj)


def test_event(endpoint: asyncpg.Record) -> dict[str, Any]:
    return {"id": new_id("evt"), "object": "event", "type": TEST_EVENT_TYPE,
            "created_at": timestamp(datetime.now(UTC)), "livemode": endpoint["livemode"],
            "data": {"object": endpoint_object(endpoint)}}


@operation("Queue a test event for this endpoint only", "webhooks:write", status=202,
           returns="WebhookDelivery")
async def send_test_event(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    db = request.app.state.db
    endpoint = await fetch_endpoint(db, key, request.path_params["endpoint_id"])
    if not endpoint["enabled"]:
        raise Problem(409, "The endpoint is disabled; enable it before sending a test event.")
    event = test_event(endpoint)
    row = await db.fetchrow(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, payload, next_attempt_at)"
        f" VALUES ($1, $2, $3, $4, now()) RETURNING {DELIVERY_COLUMNS}",
        new_id("whd"), endpoint["id"], event["id"], event)
    return json_response(delivery_object(row, []), 202)



def attempt_object(row: asyncpg.Record) -> dict[str, Any]:
    return {"attempted_at": timestamp(row["attempted_at"]), "status_code": row["status_code"],
            "latency_ms": row["latency_ms"], "error": row["error"], "response_excerpt": row["response_excerpt"]}


def delivery_object(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> dict[str, Any]:
    return {"id": row["id"], "object": "webhook_delivery", "endpoint_id": row["endpoint_id"],
            "event_id": row["event_id"], "event_type": row["event_type"], "status": row["status"],
            "attempt_count": row["attempt_count"], "next_attempt_at": timestamp(row["next_attempt_at"]),
            "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
            "attempts": [attempt_object(a) for a in attempts]}


@operation("List deliveries and their attempts, newest first", "webhooks:read", returns="WebhookDelivery",
           many=True, query=PAGE + (Query("status", {"enum": list(DELIVERY_STATUSES)}),
                                    Query("event_id", {"type": "string"})))
async def list_deliveries(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    limit, offset = page(request)
    db = request.app.state.db
    endpoint = await fetch_endpoint(db, key, request.path_params["endpoint_id"])
    where, args = ["endpoint_id = $1"], [endpoint["id"]]
    if status := request.query_params.get("status"):
        if status not in DELIVERY_STATUSES:
            raise Problem(422, f"`status` must be one of {', '.join(DELIVERY_STATUSES)}.",
                          errors=[{"field": "status", "message": f"must be one of {', '.join(DELIVERY_STATUSES)}"}])
        args.append(status)
        where.append("status = $2")
    if event_id := request.query_params.get("event_id"):
        args.append(event_id)
        where.append(f"event_id = ${len(args)}")
    clause = " AND ".join(where)
    total = await db.fetchval(f"SELECT count(*) FROM webhook_deliveries WHERE {clause}", *args)
    rows = await db.fetch(f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {clause}"
                          f" ORDER BY created_at DESC, id LIMIT {limit} OFFSET {offset}", *args)
    attempts = await db.fetch("SELECT * FROM webhook_attempts WHERE delivery_id = ANY ($1::text[])"
                              " ORDER BY attempted_at, id", [r["id"] for r in rows])
    by_delivery: dict[str, list[asyncpg.Record]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
    return list_response([delivery_object(r, by_delivery.get(r["id"], [])) for r in rows], total, limit, offset)


routes = [
    Route("/v1/webhook-endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook-endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", get_endpoint, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", update_endpoint, methods=["PATCH"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/test", send_test_event, methods=["POST"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/rotate-secret", rotate_secret, methods=["POST"]),
]
