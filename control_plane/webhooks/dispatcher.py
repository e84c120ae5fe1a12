"""The webhook dispatcher: outbox events → one delivery per subscribed endpoint → signed POSTs, retried.

Two kinds of loop share one process and may run in as many processes as needed:

- fan-out claims undispatched events (`FOR UPDATE SKIP LOCKED`), creates one delivery per matching
  enabled endpoint and marks the events dispatched, all in one transaction;
- delivery loops claim due deliveries (`FOR UPDATE SKIP LOCKED`), send them concurrently and record
  every attempt in the same transaction that holds the claim; endpoint health (failing since, disabled)
  follows in a short transaction of its own. A dispatcher that dies mid-batch (even
  by `kill -9`) loses its connection, PostgreSQL rolls the claim back, and another loop sends the batch
  again: delivery is at least once, and receivers deduplicate on `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias

import aiohttp
import asyncpg
import orjson

from control_plane.webhooks import signing
from control_plane.webhooks.delivery import AttemptResult, attempt, create_session
from control_plane.webhooks.metrics import QUEUE_DEPTH, WebhookMetrics
from control_plane.webhooks.schedule import DISABLE_AFTER, Clock, Jitter, next_attempt_at, system_clock
from shared.database import create_pool
from shared.ids import new_id
from shared.metrics_server import metrics_server
from shared.outbox import event_object
from shared.processes import stop_on_signals
from shared.settings import WebhookSettings

log = logging.getLogger(__name__)
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

FAN_OUT_BATCH = 500
QUEUE_DEPTH_INTERVAL_S = 5.0
RETRYABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)

CLAIM_EVENTS = """
SELECT seq, id FROM events WHERE dispatched_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"""
# Endpoints subscribe from their creation on; an endpoint never receives events from before it existed.
SUBSCRIBERS = """
SELECT e.id AS event_id, w.id AS endpoint_id
FROM events e JOIN webhook_endpoints w
  ON w.org_id = e.org_id AND w.livemode = e.livemode AND w.enabled AND w.created_at <= e.created_at
 AND (e.type = ANY (w.events) OR '*' = ANY (w.events))
WHERE e.id = ANY ($1::text[])"""
CREATE_DELIVERIES = """
INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at, created_at, updated_at)
SELECT d.id, d.event_id, d.endpoint_id, $4, $4, $4 FROM unnest($1::text[], $2::text[], $3::text[])
    AS d (id, event_id, endpoint_id)
ON CONFLICT (event_id, endpoint_id) DO NOTHING"""
CLAIM_DUE = """
SELECT d.id AS delivery_id, d.event_id, d.endpoint_id, d.attempt_count, d.payload,
       w.url, w.secret, w.previous_secret, w.previous_secret_expires_at,
       e.id, e.type, e.livemode, e.created_at, e.data
FROM webhook_deliveries d
JOIN webhook_endpoints w ON w.id = d.endpoint_id
LEFT JOIN events e ON e.id = d.event_id
WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND w.enabled
ORDER BY d.next_attempt_at
LIMIT $2
FOR UPDATE OF d SKIP LOCKED"""
RECORD_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, latency_ms, error, response_excerpt)
VALUES ($1, $2, $3, $4, $5, $6)"""
UPDATE_DELIVERY = """
UPDATE webhook_deliveries SET status = $2, attempt_count = $3, next_attempt_at = $4, updated_at = $5
WHERE id = $1"""
ENDPOINT_RECOVERED = "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL"
ENDPOINT_FAILED = """
UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, $2) WHERE id = $1 RETURNING failing_since"""
DISABLE_ENDPOINT = """
UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 WHERE id = $1 AND enabled"""
# Parked deliveries (no next attempt) wait for the endpoint to be enabled again; rows another loop holds
# are skipped rather than waited for, which could deadlock with that loop's own endpoint update.
PARK_PENDING = """
UPDATE webhook_deliveries SET next_attempt_at = NULL WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'
    FOR UPDATE SKIP LOCKED)"""


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery: asyncpg.Record
    attempted_at: datetime
    result: AttemptResult


class NextState(NamedTuple):
    """A delivery after an attempt: the parameters of UPDATE_DELIVERY, in order."""

    delivery_id: str
    status: str  # succeeded | pending (retried at next_attempt_at) | failed
    attempt_count: int
    next_attempt_at: datetime | None
    updated_at: datetime


def delivery_body(row: asyncpg.Record) -> bytes | None:
    """The event object as JSON: a test delivery's own payload, else the outbox row's event."""
    if row["payload"] is not None:
        return orjson.dumps(row["payload"])
    if row["id"] is None:
        return None
    return orjson.dumps(event_object(row))


def secrets_in_use(row: asyncpg.Record, now: datetime) -> list[str]:
    expires = row["previous_secret_expires_at"]
    if row["previous_secret"] and expires is not None and expires > now:
        return [row["secret"], row["previous_secret"]]
    return [row["secret"]]


class Dispatcher:
    def __init__(self, settings: WebhookSettings, db: asyncpg.Pool[Any], session: aiohttp.ClientSession, *,
                 clock: Clock = system_clock, jitter: Jitter = random.random) -> None:
        self.settings = settings
        self.db = db
        self.session = session
        self.clock = clock
        self.jitter = jitter
        self.attempts = 0
        self.metrics = WebhookMetrics()

    async def fan_out(self, limit: int = FAN_OUT_BATCH) -> int:
        """Turn up to `limit` outbox events into deliveries; returns the number of events claimed."""
        now = self.clock()
        async with self.db.acquire() as conn, conn.transaction():
            events = await conn.fetch(CLAIM_EVENTS, limit)
            if not events:
                return 0
            pairs = await conn.fetch(SUBSCRIBERS, [e["id"] for e in events])
            if pairs:
                await conn.execute(CREATE_DELIVERIES, [new_id("whd") for _ in pairs],
                                   [p["event_id"] for p in pairs], [p["endpoint_id"] for p in pairs], now)
            await conn.execute("UPDATE events SET dispatched_at = $2 WHERE seq = ANY ($1::bigint[])",
                               [e["seq"] for e in events], now)
        return len(events)

    async def deliver_due(self) -> int:
        """Send one batch of due deliveries; returns how many were attempted."""
        async with self.db.acquire() as conn, conn.transaction():
            due = await conn.fetch(CLAIM_DUE, self.clock(), self.settings.batch_size)
            if not due:
                return 0
            outcomes = await asyncio.gather(*(self._send(row) for row in due))
            states = await self._record(conn, outcomes)
        self.attempts += len(due)
        for state in states:
            self.metrics.deliveries.labels("retrying" if state.status == "pending" else state.status).inc()
        # Endpoint health is updated only after the claim is released: a transaction that holds
        # deliveries never waits for an endpoint row, so it cannot deadlock with an API call that
        # holds the endpoint and waits for its deliveries (DELETE cascades, PATCH parks them).
        await self._update_endpoints(outcomes)
        return len(due)

    async def _send(self, row: asyncpg.Record) -> Outcome:
        now = self.clock()
        body = delivery_body(row)
        if body is None:
            return Outcome(row, now, AttemptResult(None, 0, "the event no longer exists", ""))
        headers = signing.headers(secrets_in_use(row, now), row["event_id"], int(now.timestamp()), body)
        try:
            result = await attempt(self.session, row["url"], body, headers, self.settings.outbound)
        except Exception as exc:
            # Recorded as a failed attempt and retried: one odd URL must not stall the whole batch.
            log.exception("unexpected error delivering %s", row["delivery_id"])
            result = AttemptResult(None, 0, f"internal error: {type(exc).__name__}", "")
        return Outcome(row, now, result)

    async def _record(self, conn: Conn, outcomes: Sequence[Outcome]) -> list[NextState]:
        await conn.executemany(RECORD_ATTEMPT, [
            (o.delivery["delivery_id"], o.attempted_at, o.result.status_code, o.result.latency_ms, o.result.error,
             o.result.response_excerpt) for o in outcomes])
        states = [self._next_state(o) for o in outcomes]
        await conn.executemany(UPDATE_DELIVERY, states)
        return states

    async def _update_endpoints(self, outcomes: Sequence[Outcome]) -> None:
        by_endpoint: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_endpoint.setdefault(outcome.delivery["endpoint_id"], []).append(outcome)
        async with self.db.acquire() as conn, conn.transaction():
            for endpoint_id in sorted(by_endpoint):  # a fixed lock order: concurrent loops cannot deadlock
                await self._update_endpoint(conn, endpoint_id, by_endpoint[endpoint_id])

    def _next_state(self, outcome: Outcome) -> NextState:
        attempts = outcome.delivery["attempt_count"] + 1
        now = outcome.attempted_at
        if outcome.result.succeeded:
            return NextState(outcome.delivery["delivery_id"], "succeeded", attempts, None, now)
        retry_at = None if outcome.result.gone else next_attempt_at(attempts, now, self.jitter)
        return NextState(outcome.delivery["delivery_id"], "pending" if retry_at else "failed", attempts, retry_at, now)

    async def _update_endpoint(self, conn: Conn, endpoint_id: str,
                               outcomes: list[Outcome]) -> None:
        now = max(o.attempted_at for o in outcomes)
        if any(o.result.succeeded for o in outcomes):
            await conn.execute(ENDPOINT_RECOVERED, endpoint_id)
        elif any(o.result.gone for o in outcomes):
            await self._disable(conn, endpoint_id, "gone", now)
        else:
            failing_since: datetime | None = await conn.fetchval(ENDPOINT_FAILED, endpoint_id, now)
            if failing_since is not None and now - failing_since >= DISABLE_AFTER:  # None: deleted meanwhile
                await self._disable(conn, endpoint_id, "failing", now)

    async def _disable(self, conn: Conn, endpoint_id: str, reason: str, now: datetime) -> None:
        log.warning("disabling webhook endpoint %s: %s", endpoint_id, reason)
        await conn.execute(DISABLE_ENDPOINT, endpoint_id, reason, now)
        await conn.execute(PARK_PENDING, endpoint_id)

    async def drain(self) -> int:
        """Fan out every event, then send everything due now; returns the attempts made (for tests)."""
        while await self.fan_out():
            pass
        made = 0
        while sent := await self.deliver_due():
            made += sent
        return made

    async def measure_queue(self) -> None:
        depth = await self.db.fetchrow(QUEUE_DEPTH, self.clock())
        assert depth is not None
        self.metrics.undispatched.set(depth["events"])
        self.metrics.due.set(depth["due"])

    async def _measure_queue_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.measure_queue()
            except RETRYABLE as exc:  # the delivery loops report the outage; the gauges keep their last value
                log.debug("queue depth not measured: %r", exc)
            await _wait(stop, QUEUE_DEPTH_INTERVAL_S)

    async def run(self, stop: asyncio.Event) -> None:
        loops = [self._loop(self.fan_out, stop), self._measure_queue_loop(stop)]
        loops += [self._loop(self.deliver_due, stop) for _ in range(self.settings.workers)]
        await asyncio.gather(*loops)

    async def _loop(self, step: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            try:
                busy = await step()
                backoff = 0.1
            except RETRYABLE as exc:
                log.warning("webhook dispatcher paused, retrying in %.1fs: %r", backoff, exc)
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not busy:
                await _wait(stop, self.settings.poll_interval)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def serve(settings: WebhookSettings) -> None:
    """Run until SIGTERM/SIGINT, then finish the batches in flight (drain) and exit."""
    stop = stop_on_signals()
    db = await create_pool(settings.stores.database_url, min_size=0, max_size=settings.workers + 2)
    session = create_session(settings.delivery_timeout)
    dispatcher = Dispatcher(settings, db, session)
    log.info("webhook dispatcher started with %d delivery loops", settings.workers)
    try:
        with metrics_server(settings.metrics_bind, dispatcher.metrics.registry):
            await dispatcher.run(stop)
    finally:
        await session.close()
        await db.close()
        log.info("webhook dispatcher stopped after %d attempts", dispatcher.attempts)
