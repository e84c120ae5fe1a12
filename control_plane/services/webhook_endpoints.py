"""Webhook endpoints: where an organisation's events are sent, and how each delivery went.

The dispatcher (`control_plane.webhooks`) sends; this module is what the API, and any other caller, changes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

import asyncpg
from pydantic import Field, StringConstraints, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import TypedDict

from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.listing import Listing, PageQuery, owned_page
from control_plane.services.schemas import Body
from control_plane.webhooks.schedule import ROTATION_GRACE
from control_plane.webhooks.signing import new_secret
from shared.ids import new_id
from shared.outbound import OutboundRefused, resolve_public_address
from shared.outbox import EVENT_TYPES
from shared.problems import Problem, field_error, not_found
from shared.settings import OutboundSettings
from shared.times import timestamp

EndpointURL = Annotated[str, StringConstraints(min_length=1, max_length=2048, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=500)]
ALL_EVENTS = "*"
# Either ["*"] or some of the event types; the validator below enforces the same.
EventTypes = Annotated[list[str], Field(min_length=1, max_length=len(EVENT_TYPES)), WithJsonSchema({"anyOf": [
    {"type": "array", "items": {"const": ALL_EVENTS}, "minItems": 1, "maxItems": 1},
    {"type": "array", "items": {"enum": list(EVENT_TYPES)}, "minItems": 1, "maxItems": len(EVENT_TYPES)}]})]


def check_event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if ALL_EVENTS in value:
        if value != [ALL_EVENTS]:
            raise ValueError('"*" subscribes to every event type and cannot be combined with others')
        return value
    if unknown := [t for t in value if t not in EVENT_TYPES]:
        raise ValueError(f"unknown event types {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(value), key=value.index)


class WebhookEndpointCreate(Body):
    url: EndpointURL
    events: EventTypes
    description: Description = ""
    enabled: bool = True

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return check_event_types(value)


class WebhookEndpointUpdate(Body):
    """Absent fields are kept; none of them can be cleared (`null` is refused)."""

    url: EndpointURL | SkipJsonSchema[None] = None
    events: EventTypes | SkipJsonSchema[None] = None
    description: Description | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return check_event_types(value)

TEST_EVENT_TYPE = "webhook_endpoint.test"
COLUMNS = "id, livemode, url, events, description, enabled, disabled_reason, created_at, updated_at"
OWNED = "org_id = $1 AND livemode = $2 AND id = $3 AND deleted_at IS NULL"
DeliveryStatus = Literal["pending", "succeeded", "failed"]
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


class WebhookEndpointPublic(TypedDict):
    id: str
    object: Literal["webhook_endpoint"]
    livemode: bool
    url: str
    events: list[str]
    description: str
    enabled: bool
    disabled_reason: Literal["gone", "failing"] | None
    created_at: str
    updated_at: str
    secret: NotRequired[str]  # only when created or rotated
    previous_secret_expires_at: NotRequired[str | None]  # only when rotated


class AttemptPublic(TypedDict):
    attempted_at: str
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str


class WebhookDeliveryPublic(TypedDict):
    id: str
    object: Literal["webhook_delivery"]
    endpoint_id: str
    event_id: str
    event_type: str | None
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: str | None
    created_at: str
    updated_at: str
    attempts: list[AttemptPublic]


class DeliveryListQuery(PageQuery):
    status: DeliveryStatus | None = None
    event_id: str | None = None


def endpoint_object(row: asyncpg.Record, secret: str | None = None) -> WebhookEndpointPublic:
    obj: WebhookEndpointPublic = {
           "id": row["id"], "object": "webhook_endpoint", "livemode": row["livemode"], "url": row["url"],
           "events": list(row["events"]), "description": row["description"], "enabled": row["enabled"],
           "disabled_reason": row["disabled_reason"], "created_at": timestamp(row["created_at"]),
           "updated_at": timestamp(row["updated_at"])}
    if secret is not None:
        obj["secret"] = secret
    return obj


def attempt_object(row: asyncpg.Record) -> AttemptPublic:
    return {"attempted_at": timestamp(row["attempted_at"]), "status_code": row["status_code"],
            "latency_ms": row["latency_ms"], "error": row["error"], "response_excerpt": row["response_excerpt"]}


def delivery_object(row: asyncpg.Record, attempts: list[asyncpg.Record]) -> WebhookDeliveryPublic:
    return {"id": row["id"], "object": "webhook_delivery", "endpoint_id": row["endpoint_id"],
            "event_id": row["event_id"], "event_type": row["event_type"], "status": row["status"],
            "attempt_count": row["attempt_count"], "next_attempt_at": timestamp(row["next_attempt_at"]),
            "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
            "attempts": [attempt_object(a) for a in attempts]}


async def checked_url(outbound: OutboundSettings, url: str) -> str:
    """The URL, if it may be reached: https (unless allowed) and only public addresses."""
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


async def create_endpoint(ctx: ServiceContext, key: ApiKey, body: WebhookEndpointCreate) -> WebhookEndpointPublic:
    """The endpoint with its `secret`, the only time it is shown."""
    url = await checked_url(ctx.settings.outbound, body.url)
    secret = new_secret()
    # Every endpoint multiplies each event of the org into one more delivery: cap them per org and mode
    # (test mode lower: its mints are free, so its events cost the org nothing).
    cap = ctx.settings.webhook_endpoints_live if key.livemode else ctx.settings.webhook_endpoints_test
    async with ctx.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                           f"webhook-endpoints|{key.org_id}|{key.livemode}")
        count = await conn.fetchval("SELECT count(*) FROM webhook_endpoints WHERE org_id = $1 AND livemode = $2"
                                    " AND deleted_at IS NULL", key.org_id, key.livemode)
        if count >= cap:
            raise Problem(409, f"This organisation already has {count} webhook endpoints in "
                          f"{'live' if key.livemode else 'test'} mode, the most allowed ({cap}); delete one first.",
                          type="webhook-endpoint-limit")
        row = await conn.fetchrow(
            "INSERT INTO webhook_endpoints (id, org_id, livemode, url, events, description, enabled, secret)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}",
            new_id("we"), key.org_id, key.livemode, url, body.events, body.description, body.enabled, secret)
    assert row is not None
    return endpoint_object(row, secret)


async def list_endpoints(ctx: ServiceContext, key: ApiKey, page: PageQuery) -> Listing[WebhookEndpointPublic]:
    rows, total = await owned_page(ctx.db, "webhook_endpoints", key, page, where="deleted_at IS NULL")
    return Listing([endpoint_object(r) for r in rows], total, page.limit, page.offset)


async def get_endpoint(ctx: ServiceContext, key: ApiKey, endpoint_id: str) -> WebhookEndpointPublic:
    return endpoint_object(await fetch_endpoint(ctx.db, key, endpoint_id))


async def update_endpoint(ctx: ServiceContext, key: ApiKey, endpoint_id: str,
                          body: WebhookEndpointUpdate) -> WebhookEndpointPublic:
    """Enabling a disabled endpoint makes its waiting deliveries due at once; disabling parks them."""
    fields = body.model_fields_set
    for name in ("url", "events", "enabled", "description"):
        if name in fields and getattr(body, name) is None:
            raise field_error(name, "cannot be null")
    url = await checked_url(ctx.settings.outbound, body.url) if body.url is not None else None
    async with ctx.transaction() as conn:
        current = await fetch_endpoint(conn, key, endpoint_id, lock=True)
        enabled = current["enabled"] if body.enabled is None else body.enabled
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET url = $2, events = $3, description = $4, enabled = $5,"
            " disabled_reason = CASE WHEN $5 THEN NULL ELSE disabled_reason END,"
            " failing_since = CASE WHEN $5 AND NOT enabled THEN NULL ELSE failing_since END,"
            # Enabled again, or pointed elsewhere: the circuit breaker starts afresh (docs/webhooks.md).
            " consecutive_failures = CASE WHEN ($5 AND NOT enabled) OR url <> $2 THEN 0 ELSE consecutive_failures END,"
            " paused_until = CASE WHEN ($5 AND NOT enabled) OR url <> $2 THEN NULL ELSE paused_until END,"
            f" updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
            current["id"], url or current["url"], body.events or current["events"],
            current["description"] if body.description is None else body.description, enabled)
        if enabled != current["enabled"]:
            await conn.execute(UNPARK if enabled else PARK, current["id"])
    assert row is not None
    return endpoint_object(row)


async def delete_endpoint(ctx: ServiceContext, key: ApiKey, endpoint_id: str) -> None:
    """The endpoint, at once; its delivery log after, in the background (docs/webhooks.md, "Deleting an endpoint").

    Only the endpoint's row is changed here, in one short statement: from its commit on the endpoint is gone
    to the API, fan-out and claims, and the dispatchers remove its deliveries in batches, then the row
    (`control_plane.webhooks.purge`). A DELETE cascading over the whole log would hold the endpoint, and
    its organisation's fan-out, for about 1 s per 200,000 deliveries."""
    deleted = await ctx.db.fetchval(f"UPDATE webhook_endpoints SET deleted_at = now(), updated_at = now()"
                                    f" WHERE {OWNED} RETURNING id", key.org_id, key.livemode, endpoint_id)
    if deleted is None:
        raise not_found("webhook endpoint")


async def rotate_secret(ctx: ServiceContext, key: ApiKey, endpoint_id: str) -> WebhookEndpointPublic:
    """A new secret, shown once; the previous one keeps signing for ROTATION_GRACE."""
    secret = new_secret()
    async with ctx.transaction() as conn:
        current = await fetch_endpoint(conn, key, endpoint_id, lock=True)
        # Only the latest previous secret is kept: rotating twice within the grace period drops the oldest.
        row = await conn.fetchrow(
            "UPDATE webhook_endpoints SET previous_secret = secret, secret = $2,"
            " previous_secret_expires_at = now() + $3::interval, updated_at = now()"
            f" WHERE id = $1 RETURNING {COLUMNS}, previous_secret_expires_at",
            current["id"], secret, ROTATION_GRACE)
    assert row is not None
    obj = endpoint_object(row, secret)
    obj["previous_secret_expires_at"] = timestamp(row["previous_secret_expires_at"])
    return obj


def test_event(endpoint: asyncpg.Record) -> dict[str, Any]:
    return {"id": new_id("evt"), "object": "event", "type": TEST_EVENT_TYPE,
            "created_at": timestamp(datetime.now(UTC)), "livemode": endpoint["livemode"],
            "data": {"object": endpoint_object(endpoint)}}


async def send_test_event(ctx: ServiceContext, key: ApiKey, endpoint_id: str) -> WebhookDeliveryPublic:
    """Queues a `webhook_endpoint.test` event for this endpoint only; 409 if it is disabled."""
    endpoint = await fetch_endpoint(ctx.db, key, endpoint_id)
    if not endpoint["enabled"]:
        raise Problem(409, "The endpoint is disabled; enable it before sending a test event.")
    event = test_event(endpoint)
    async with ctx.transaction() as conn:
        # Deleted meanwhile: its log is being removed (docs/webhooks.md, "Deleting an endpoint"). KEY SHARE keeps
        # the row until the delivery is in; the removal of the log never waits for it (it skips held rows).
        if await conn.fetchval("SELECT 1 FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL FOR KEY SHARE",
                               endpoint["id"]) is None:
            raise not_found("webhook endpoint")
        # Whoever sends a test event (a receiver just fixed) wants to know now: an open circuit's pause
        # ends, and the next due delivery probes the endpoint at once (docs/webhooks.md).
        await conn.execute("UPDATE webhook_endpoints SET paused_until = NULL"
                           " WHERE id = $1 AND paused_until IS NOT NULL", endpoint["id"])
        row = await conn.fetchrow(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, payload, next_attempt_at)"
            f" VALUES ($1, $2, $3, $4, now()) RETURNING {DELIVERY_COLUMNS}",
            new_id("whd"), endpoint["id"], event["id"], event)
    assert row is not None
    return delivery_object(row, [])


async def list_deliveries(ctx: ServiceContext, key: ApiKey, endpoint_id: str,
                          query: DeliveryListQuery) -> Listing[WebhookDeliveryPublic]:
    """Deliveries newest first, each with its attempts."""
    db = ctx.db
    endpoint = await fetch_endpoint(db, key, endpoint_id)
    where, args = ["endpoint_id = $1"], [endpoint["id"]]
    if query.status is not None:
        args.append(query.status)
        where.append(f"status = ${len(args)}")
    if query.event_id:
        args.append(query.event_id)
        where.append(f"event_id = ${len(args)}")
    clause = " AND ".join(where)
    total = await db.fetchval(f"SELECT count(*) FROM webhook_deliveries WHERE {clause}", *args)
    rows = await db.fetch(f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {clause}"
                          f" ORDER BY created_at DESC, id LIMIT {query.limit} OFFSET {query.offset}", *args)
    attempts = await db.fetch("SELECT * FROM webhook_attempts WHERE delivery_id = ANY ($1::text[])"
                              " ORDER BY attempted_at, id", [r["id"] for r in rows])
    by_delivery: dict[str, list[asyncpg.Record]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt["delivery_id"], []).append(attempt)
    return Listing([delivery_object(r, by_delivery.get(r["id"], [])) for r in rows], total, query.limit,
                   query.offset)
