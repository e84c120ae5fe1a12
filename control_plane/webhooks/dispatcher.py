"""The webhook dispatcher: outbox events → one delivery per subscribed endpoint → signed POSTs, retried.

Three loops share one process, and any number of processes may run side by side:

- fan-out (`fan_out.py`) turns undispatched events into deliveries, a turn per organisation and mode,
  and holds back the events of one whose queue is full (WEBHOOK_ORG_QUEUE);
- the sender claims due deliveries under per-endpoint, per-organisation and per-process bounds
  (`claims.py`), leases them, and sends each on a task of its own: a slow receiver holds its own slots
  and nobody else's;
- the recorder writes each finished attempt, the delivery's next state and the endpoint's health
  (failures in a row, circuit breaker, failing since, disabled) in one short transaction, and frees
  the slot. A dispatcher that dies (even by `kill -9`) leaves its leases to expire and another sends
  those deliveries again: delivery is at least once, and receivers deduplicate on `webhook-id`.

A fourth loop removes finished deliveries older than WEBHOOK_LOG_RETENTION_DAYS (`retention.py`), and a fifth
the delivery logs of deleted endpoints, in batches, then their rows (`purge.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeAlias

import aiohttp
import asyncpg
import orjson

from control_plane.webhooks import signing
from control_plane.webhooks.claims import claim
from control_plane.webhooks.delivery import AttemptResult, attempt, create_session
from control_plane.webhooks.fan_out import Pair, fan_out_round
from control_plane.webhooks.metrics import (
    DELIVERY_STATES,
    ENDPOINT_HEALTH,
    ENDPOINT_STATES,
    QUEUE_DEPTH,
    WebhookMetrics,
)
from control_plane.webhooks.purge import purge_batch
from control_plane.webhooks.retention import PRUNE_BATCH, prune_batch
from control_plane.webhooks.schedule import (
    DISABLE_AFTER,
    Clock,
    Jitter,
    circuit_pause,
    next_attempt_at,
    system_clock,
)
from shared.database import create_pool
from shared.ids import new_id
from shared.metrics_server import metrics_server
from shared.outbox import event_object
from shared.processes import Backoff, pause, stop_on_signals
from shared.settings import WEBHOOK_RECORD_S, WebhookSettings
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

FAN_OUT_BATCH = 500
QUEUE_DEPTH_INTERVAL_S = 5.0
SHUTDOWN_RECORD_S = WEBHOOK_RECORD_S  # after SIGTERM, how long to keep trying to record attempts already made
PRUNE_INTERVAL_S = 600.0  # between rounds of removing the log's expired deliveries
PURGE_INTERVAL_S = 5.0  # how often to look for a deleted endpoint whose log is left to remove
HELD_RETRY_S = 0.05  # how soon an outcome whose endpoint another transaction held is recorded again
# The stores' outages (shared.unavailable): the same statement succeeds later, so attempts wait for it.
RETRYABLE: tuple[type[Exception], ...] = (*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT)
# Fan-out, claims and gauges have no one item to blame for any other PostgreSQL error: they pause and retry.
PAUSES: tuple[type[Exception], ...] = (*RETRYABLE, asyncpg.PostgresError)

RECORD_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, latency_ms, error, response_excerpt)
VALUES ($1, $2, $3, $4, $5, $6)"""
# Only while the lease the attempt was sent under still holds: an attempt whose lease was lost (it expired,
# and the delivery was claimed and sent again) is recorded, but leaves the delivery to the newer attempt.
UPDATE_DELIVERY = """
UPDATE webhook_deliveries SET status = $2, attempt_count = $3, next_attempt_at = $4, updated_at = $5,
       leased_until = NULL, leased_by = NULL
WHERE id = $1 AND leased_by = $6"""
# The endpoints of the attempts being recorded, locked before any delivery row: the API locks an endpoint
# before its deliveries too (PATCH parks). One that another transaction holds (a PATCH, or a DELETE marking
# it) is skipped, not waited for, and its outcomes are recorded a moment later. A deleted endpoint's are
# not recorded: its log is being removed (purge.py).
LOCK_ENDPOINTS = """
SELECT id, enabled, consecutive_failures, failing_since, paused_until FROM webhook_endpoints
WHERE id = ANY ($1::text[]) AND deleted_at IS NULL ORDER BY id FOR NO KEY UPDATE SKIP LOCKED"""
EXISTING_ENDPOINTS = "SELECT id FROM webhook_endpoints WHERE id = ANY ($1::text[]) AND deleted_at IS NULL"
ENDPOINT_RECOVERED = """
UPDATE webhook_endpoints SET failing_since = NULL, consecutive_failures = 0, paused_until = NULL WHERE id = $1"""
ENDPOINT_FAILED = """
UPDATE webhook_endpoints SET failing_since = $2, consecutive_failures = $3, paused_until = $4 WHERE id = $1"""
DISABLE_ENDPOINT = """
UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = $3 WHERE id = $1 AND enabled"""
# Parked deliveries (no next attempt) wait for the endpoint to be enabled again; rows another
# transaction holds are skipped rather than waited for.
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


def without_nul(text: str | None) -> str | None:
    """PostgreSQL text cannot hold U+0000, and a receiver's answer may: it is left out."""
    return None if text is None else text.replace("\x00", "")


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
        self.owner = new_id("wdisp")  # the name on this process's leases, each claim's token begins with it
        self._claims = 0
        self.attempts = 0
        self.metrics = WebhookMetrics()
        self._fan_out_after: Pair | None = None
        self._sending: dict[str, asyncio.Task[Outcome]] = {}  # by delivery id: being sent, or not yet recorded
        self._finished: list[Outcome] = []
        self._recorded = asyncio.Event()  # a slot came free
        self._to_record = asyncio.Event()

    async def fan_out(self, limit: int = FAN_OUT_BATCH) -> int:
        """Turn up to about `limit` outbox events into deliveries; returns the number of events dispatched."""
        async with self.db.acquire() as conn, conn.transaction():
            done, self._fan_out_after = await fan_out_round(conn, self.clock(), limit=limit,
                                                            org_queue=self.settings.org_queue,
                                                            after=self._fan_out_after)
        self.metrics.held.set(len(done.held))
        return done.dispatched

    async def claim(self, room: int) -> list[asyncpg.Record]:
        """Lease up to `room` due deliveries to this dispatcher, within every concurrency bound."""
        now = self.clock()
        self._claims += 1
        async with self.db.acquire() as conn:
            return await claim(conn, now, room=room, endpoint_concurrency=self.settings.endpoint_concurrency,
                               org_concurrency=self.settings.org_concurrency,
                               lease_until=now + timedelta(seconds=self.settings.lease),
                               lease=f"{self.owner}.{self._claims}", holding=list(self._sending))

    async def deliver_due(self) -> int:
        """Claim what is due now, send it all and record it; returns how many were attempted (for tests).

        Outcomes whose endpoint another transaction holds are not recorded: their leases expire."""
        due = await self.claim(self.settings.concurrency)
        if due:
            await self.record(await asyncio.gather(*(self._send(row) for row in due)))
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
            # Recorded as a failed attempt and retried: one odd URL must not stall the dispatcher.
            log.exception("unexpected error delivering %s", row["delivery_id"])
            result = AttemptResult(None, 0, f"internal error: {type(exc).__name__}", "")
        return Outcome(row, now, result)

    async def record(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """Attempts, the deliveries' next states and their endpoints' health, in one transaction; returns the
        outcomes left for later, those of an endpoint another transaction holds (being deleted, or patched)."""
        by_endpoint: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            by_endpoint.setdefault(outcome.delivery["endpoint_id"], []).append(outcome)
        states: list[NextState] = []
        async with self.db.acquire() as conn, conn.transaction():
            endpoints = {r["id"]: r for r in await conn.fetch(LOCK_ENDPOINTS, sorted(by_endpoint))}
            held = set(by_endpoint) - set(endpoints)
            if held:
                held &= {r["id"] for r in await conn.fetch(EXISTING_ENDPOINTS, list(held))}
            # An endpoint deleted meanwhile: its deliveries go with it, nothing is recorded.
            kept = [o for o in outcomes if o.delivery["endpoint_id"] in endpoints]
            await conn.executemany(RECORD_ATTEMPT, [
                (o.delivery["delivery_id"], o.attempted_at, o.result.status_code, o.result.latency_ms,
                 without_nul(o.result.error), without_nul(o.result.response_excerpt)) for o in kept])
            states = [self._next_state(o, endpoints[o.delivery["endpoint_id"]]["enabled"]) for o in kept]
            await conn.executemany(UPDATE_DELIVERY, [  # each under the lease its attempt was sent under
                (*state, o.delivery["lease"]) for state, o in zip(states, kept, strict=True)])
            for endpoint_id, endpoint in endpoints.items():
                await self._update_endpoint(conn, endpoint, by_endpoint[endpoint_id])
        left = [o for o in outcomes if o.delivery["endpoint_id"] in held]
        self.attempts += len(outcomes) - len(left)
        for state in states:
            self.metrics.deliveries.labels("retrying" if state.status == "pending" else state.status).inc()
        return left

    def _next_state(self, outcome: Outcome, endpoint_enabled: bool) -> NextState:
        attempts = outcome.delivery["attempt_count"] + 1
        now = outcome.attempted_at
        if outcome.result.succeeded:
            return NextState(outcome.delivery["delivery_id"], "succeeded", attempts, None, now)
        retry_at = None if outcome.result.gone else next_attempt_at(attempts, now, self.jitter)
        if retry_at is None:
            return NextState(outcome.delivery["delivery_id"], "failed", attempts, None, now)
        # Disabled while this attempt was under way: the delivery waits with the others (parked).
        return NextState(outcome.delivery["delivery_id"], "pending", attempts, retry_at if endpoint_enabled else None,
                         now)

    async def _update_endpoint(self, conn: Conn, endpoint: asyncpg.Record, outcomes: list[Outcome]) -> None:
        now = max(o.attempted_at for o in outcomes)
        if any(o.result.succeeded for o in outcomes):
            if endpoint["failing_since"] or endpoint["consecutive_failures"] or endpoint["paused_until"]:
                await conn.execute(ENDPOINT_RECOVERED, endpoint["id"])
        elif any(o.result.gone for o in outcomes):
            await self._disable(conn, endpoint["id"], "gone", now)
        else:
            failing_since = endpoint["failing_since"] or min(o.attempted_at for o in outcomes)
            failures = endpoint["consecutive_failures"] + len(outcomes)
            paused_until = circuit_pause(failures, now, self.jitter)
            if paused_until is not None and (endpoint["paused_until"] is None or endpoint["paused_until"] <= now):
                log.warning("webhook endpoint %s failed %d times in a row: nothing sent to it until %s",
                            endpoint["id"], failures, paused_until.isoformat(timespec="seconds"))
            await conn.execute(ENDPOINT_FAILED, endpoint["id"], failing_since, failures, paused_until)
            if now - failing_since >= DISABLE_AFTER:
                await self._disable(conn, endpoint["id"], "failing", now)

    async def _disable(self, conn: Conn, endpoint_id: str, reason: str, now: datetime) -> None:
        log.warning("disabling webhook endpoint %s: %s", endpoint_id, reason)
        await conn.execute(DISABLE_ENDPOINT, endpoint_id, reason, now)
        await conn.execute(PARK_PENDING, endpoint_id)

    async def drain(self) -> int:
        """Fan out every event it may, then send everything due now; returns the attempts made (for tests)."""
        while await self.fan_out():
            pass
        made = 0
        while sent := await self.deliver_due():
            made += sent
        return made

    async def prune_log(self) -> int:
        """One batch of finished deliveries past the retention, removed with their attempts; returns how many."""
        if not self.settings.log_retention_days:
            return 0
        created_before = self.clock() - timedelta(days=self.settings.log_retention_days)
        async with self.db.acquire() as conn, conn.transaction():
            return await prune_batch(conn, created_before)

    async def _prune_loop(self, stop: asyncio.Event) -> None:
        # caught up below a full batch: the next deliveries expire later
        await _in_batches(stop, self.prune_log, PRUNE_BATCH, PRUNE_INTERVAL_S, "webhook log retention paused")

    async def purge_deleted(self) -> int:
        """One batch of a deleted endpoint's deliveries removed, or its row once they are gone; returns how many
        rows went (0: nothing to remove now)."""
        async with self.db.acquire() as conn, conn.transaction():
            return await purge_batch(conn)

    async def _purge_loop(self, stop: asyncio.Event) -> None:
        # nothing removed: nothing deleted, or only rows another transaction holds; look again later
        await _in_batches(stop, self.purge_deleted, 1, PURGE_INTERVAL_S, "removing deleted webhook endpoints paused")

    async def measure_queue(self) -> None:
        now = self.clock()
        depth = await self.db.fetchrow(QUEUE_DEPTH, now)
        health = await self.db.fetchrow(ENDPOINT_HEALTH, now)
        assert depth is not None and health is not None
        self.metrics.undispatched.set(depth["undispatched"])
        for state in DELIVERY_STATES:
            self.metrics.queued.labels(state).set(depth[state])
        for state in ENDPOINT_STATES:
            self.metrics.endpoints.labels(state).set(health[state])

    async def _measure_queue_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.measure_queue()
            except PAUSES as exc:  # the other loops report the outage; the gauges keep their last value
                log.debug("queue depth not measured: %r", exc)
            await pause(stop, QUEUE_DEPTH_INTERVAL_S)

    async def run(self, stop: asyncio.Event) -> None:
        sending = asyncio.create_task(self._send_loop(stop))
        recording = asyncio.create_task(self._record_loop(stop, sending))
        await asyncio.gather(self._loop(self.fan_out, stop), self._measure_queue_loop(stop), self._prune_loop(stop),
                             self._purge_loop(stop), sending, recording)

    async def _send_loop(self, stop: asyncio.Event) -> None:
        """Keep up to WEBHOOK_CONCURRENCY deliveries in flight, each on its own task."""
        backoff = Backoff()
        while not stop.is_set():
            self._recorded.clear()
            room = self.settings.concurrency - len(self._sending)
            if room > 0:
                try:
                    due = await self.claim(room)
                    backoff.reset()
                except PAUSES as exc:
                    await backoff.wait(stop, log, "webhook dispatcher paused", exc)
                    continue
                for row in due:
                    task = asyncio.create_task(self._send(row))
                    self._sending[row["delivery_id"]] = task
                    task.add_done_callback(self._finish)
                self.metrics.in_flight.set(len(self._sending))
            # Claim again once a slot is free (an attempt recorded), or anything else became due.
            await _wait_any(stop, self._recorded, self.settings.poll_interval)

    def _finish(self, task: asyncio.Task[Outcome]) -> None:
        self._finished.append(task.result())  # _send returns an outcome whatever happens
        self._to_record.set()

    async def _record_loop(self, stop: asyncio.Event, sending: asyncio.Task[None]) -> None:
        """Record finished attempts as they come, in batches; after `stop`, until every send is recorded."""
        backoff, never = Backoff(), asyncio.Event()  # attempts are recorded after `stop` too
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        held: list[Outcome] = []  # their endpoint was held by another transaction: tried again after HELD_RETRY_S
        held_until = 0.0
        while True:
            if held and loop.time() >= held_until:
                self._finished, held = held + self._finished, []
            if stop.is_set() and sending.done():
                if not self._sending:
                    return
                deadline = deadline or loop.time() + self.settings.delivery_timeout + SHUTDOWN_RECORD_S
                if loop.time() > deadline:
                    log.warning("stopping with %d attempts unrecorded; their leases expire and they are sent again",
                                len(self._sending))
                    return
            if not self._finished:
                self._to_record.clear()
                wake = min(0.5, held_until - loop.time()) if held else 0.5
                with contextlib.suppress(TimeoutError):  # not on `stop`: after it, this waits for the sends
                    await asyncio.wait_for(self._to_record.wait(), max(0.0, wake))
                continue
            batch, self._finished = self._finished, []
            later, left, outage = await self._record_or_drop(batch)
            if outage is None:
                backoff.reset()
            if later:
                held, held_until = held + later, loop.time() + HELD_RETRY_S
            unrecorded = {o.delivery["delivery_id"] for o in later + left}
            for outcome in batch:
                if outcome.delivery["delivery_id"] not in unrecorded:
                    self._sending.pop(outcome.delivery["delivery_id"], None)
            self.metrics.in_flight.set(len(self._sending))
            self._recorded.set()
            if outage is not None:
                self._finished = left + self._finished
                await backoff.wait(never, log, "webhook attempts not recorded", outage)

    async def _record_or_drop(self, batch: list[Outcome]) -> tuple[list[Outcome], list[Outcome], Exception | None]:
        """Record `batch`; returns the outcomes whose endpoint another transaction held, those an outage left
        for later, and the outage that stopped it, if one did.

        After an error that is no outage each outcome is recorded alone, and only one that fails again is dropped
        (logged): its delivery is sent again once its lease expires, and no other attempt waits behind it.
        """
        try:
            return await self.record(batch), [], None
        except RETRYABLE as exc:
            return [], batch, exc
        except Exception:
            if len(batch) == 1:
                log.exception("webhook attempt of delivery %s not recorded, dropped: it is sent again once its "
                              "lease expires", batch[0].delivery["delivery_id"])
                return [], [], None
        later: list[Outcome] = []
        for n, outcome in enumerate(batch):
            held, _, outage = await self._record_or_drop([outcome])
            later += held
            if outage is not None:
                return later, batch[n:], outage
        return later, [], None

    async def _loop(self, step: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                busy = await step()
                backoff.reset()
            except PAUSES as exc:
                await backoff.wait(stop, log, "webhook dispatcher paused", exc)
                continue
            if not busy:
                await pause(stop, self.settings.poll_interval)


async def _wait_any(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> None:
    """Until `stop` or `event` is set, or `seconds` pass."""
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(event.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def serve(settings: WebhookSettings) -> None:
    """Run until SIGTERM/SIGINT, then let the attempts in flight finish and be recorded, and exit."""
    stop = stop_on_signals()
    db = await create_pool(settings.stores.database_url, min_size=0, max_size=4)
    session = create_session(settings.delivery_timeout)
    dispatcher = Dispatcher(settings, db, session)
    log.info("webhook dispatcher started: up to %d deliveries in flight, %d per endpoint, %d per organisation",
             settings.concurrency, settings.endpoint_concurrency, settings.org_concurrency)
    try:
        with metrics_server(settings.metrics_bind, dispatcher.metrics.registry):
            await dispatcher.run(stop)
    finally:
        await session.close()
        await db.close()
        log.info("webhook dispatcher stopped after %d attempts", dispatcher.attempts)


async def _in_batches(stop: asyncio.Event, batch: Callable[[], Awaitable[int]], full: int, interval: float,
                      paused: str) -> None:
    """Run `batch` until `stop`; after one that removed fewer than `full` rows, wait `interval` seconds; while
    PostgreSQL is away, back off (logged once as `paused`)."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            removed = await batch()
            backoff.reset()
        except PAUSES as exc:
            await backoff.wait(stop, log, paused, exc)
            continue
        if removed < full:
            await pause(stop, interval)
