"""No tenant holds up another's webhooks: a hanging receiver, a flood of events, a dead endpoint.

The first two run the real dispatcher loops on the real clock against a local receiver; the bounds
they assert are generous (seconds where the dispatcher needs milliseconds), and what they compare is
one organisation's delivery against another's backlog, not a speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from control_plane.webhooks import fan_out
from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from shared.database import create_pool
from shared.outbox import record_event
from shared.settings import WebhookSettings
from tests.conftest import KeyFactory, bearer
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
    create_group,
    eventually,
    loops_running,
)


async def org_of(pool: asyncpg.Pool[Any], endpoint: dict[str, Any]) -> str:
    org_id: str = await pool.fetchval("SELECT org_id FROM webhook_endpoints WHERE id = $1", endpoint["id"])
    return org_id


async def record_events(pool: asyncpg.Pool[Any], org_id: str, count: int, livemode: bool = True) -> set[str]:
    """`count` events in one transaction, through the outbox writer every change path uses (a bulk mint)."""
    async with pool.acquire() as conn, conn.transaction():
        return {await record_event(conn, org_id, livemode, "qr.created", {"id": f"qr_{n:05d}", "object": "qr"})
                for n in range(count)}


@contextlib.asynccontextmanager
async def running(settings: WebhookSettings, database_url: str) -> AsyncIterator[Dispatcher]:
    """The dispatcher's loops as `scanroute webhooks` runs them, on a pool of their own."""
    pool = await create_pool(database_url, min_size=0, max_size=4)
    try:
        dispatcher = Dispatcher(settings, pool, create_session(settings.delivery_timeout))
        async with loops_running(dispatcher, stop_within=30):
            yield dispatcher
    finally:
        await pool.close()


async def test_a_receiver_that_hangs_does_not_delay_another_organisations_delivery(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        database_url: str, pool: asyncpg.Pool[Any]) -> None:
    slow_key = await make_key(scopes=WEBHOOK_SCOPES)
    slow_org = await org_of(pool, await create_endpoint(api, slow_key, receiver.url("/slow")))
    receiver.hold.add("/slow")  # each request hangs until released (at most 10 s, the delivery timeout)
    await record_events(pool, slow_org, 150)  # more than every slot of the dispatcher
    fast_key = await make_key("globex", scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, fast_key, receiver.url("/fast"))
    settings = dataclasses.replace(webhook_settings, poll_interval=0.05)

    async with running(settings, database_url):
        await eventually(lambda: receiver.in_flight.get("/slow", 0) >= settings.endpoint_concurrency)
        await asyncio.sleep(0.2)  # every slot the dispatcher would give the slow endpoint is taken now
        enqueued = time.monotonic()
        await create_group(api, fast_key)
        await eventually(lambda: bool(receiver.at("/fast")), timeout=15)
        waited = time.monotonic() - enqueued
        hanging = receiver.in_flight.get("/slow", 0)
        slow_done = await pool.fetchval("SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints w"
                                        " ON w.id = d.endpoint_id WHERE w.org_id = $1 AND d.status <> 'pending'",
                                        slow_org)
        receiver.release.set()

    assert waited < 5, f"the other organisation's delivery waited {waited:.1f} s behind a hanging receiver"
    assert slow_done == 0 and hanging > 0, "the slow receiver was still holding its requests"
    assert receiver.most_in_flight["/slow"] == settings.endpoint_concurrency


async def test_a_flood_from_one_organisation_does_not_starve_another(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        database_url: str, pool: asyncpg.Pool[Any]) -> None:
    flood_key = await make_key(scopes=WEBHOOK_SCOPES, livemode=False)  # test mode: its mints are free
    flood_org = await org_of(pool, await create_endpoint(api, flood_key, receiver.url("/flood")))
    await record_events(pool, flood_org, 3000, livemode=False)
    quiet_key = await make_key("globex", scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, quiet_key, receiver.url("/quiet"))
    receiver.delay = 0.01
    settings = dataclasses.replace(webhook_settings, poll_interval=0.05)

    async with running(settings, database_url):
        await eventually(lambda: len(receiver.at("/flood")) >= 20)
        await create_group(api, quiet_key)
        await eventually(lambda: bool(receiver.at("/quiet")), timeout=60)
        flooded = len(receiver.at("/flood"))

    assert flooded < 1500, f"the quiet organisation's one event waited for {flooded} of the flood's 3,000"


async def test_an_organisation_at_its_queue_bound_keeps_its_events_in_the_outbox(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    busy_key = await make_key(scopes=WEBHOOK_SCOPES)
    busy_org = await org_of(pool, await create_endpoint(api, busy_key, receiver.url("/busy")))
    events = await record_events(pool, busy_org, 20)
    other_key = await make_key("globex", scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, other_key, receiver.url("/other"))
    await create_group(api, other_key)
    clock.advance(timedelta(seconds=5))  # the API wrote at the database's now, after the clock stopped
    settings = dataclasses.replace(webhook_settings, org_queue=5)
    session = create_session(settings.delivery_timeout)
    try:
        dispatcher = Dispatcher(settings, pool, session, clock=clock, jitter=lambda: 0.5)
        assert await dispatcher.fan_out() == 5 + 1, "five of the busy organisation's events, and the other's one"
        assert await dispatcher.fan_out() == 0
        await dispatcher.measure_queue()
        registry = dispatcher.metrics.registry
        assert registry.get_sample_value("scanroute_webhook_undispatched_events") == 15
        assert registry.get_sample_value("scanroute_webhook_held_queues") == 1
        assert registry.get_sample_value("scanroute_webhook_pending_deliveries", {"state": "due"}) == 6

        for _ in range(10):  # each round sends what is queued, and makes room for five more
            await dispatcher.drain()
    finally:
        await session.close()
    assert {r.headers["webhook-id"] for r in receiver.at("/busy")} == events
    assert len(receiver.at("/busy")) == 20 and len(receiver.at("/other")) == 1
    assert await pool.fetchval("SELECT count(*) FROM events WHERE dispatched_at IS NULL") == 0


async def test_a_dead_endpoints_backlog_does_not_hold_its_organisations_other_endpoints(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    org_id = await org_of(pool, await create_endpoint(api, key, receiver.url("/dead")))
    await create_endpoint(api, key, receiver.url("/live"))
    receiver.script["/dead"] = [503] * 1000
    clock.advance(timedelta(seconds=5))
    events = await record_events(pool, org_id, 30)
    settings = dataclasses.replace(webhook_settings, org_queue=5)
    session = create_session(settings.delivery_timeout)
    try:
        dispatcher = Dispatcher(settings, pool, session, clock=clock, jitter=lambda: 0.5)
        for _ in range(40):  # its circuit opens after five failures; the dead one's backlog then waits apart
            await dispatcher.drain()
    finally:
        await session.close()
    assert {r.headers["webhook-id"] for r in receiver.at("/live")} == events
    assert await pool.fetchval("SELECT count(*) FROM events WHERE dispatched_at IS NULL") == 0
    dead_pending = await pool.fetchval(
        "SELECT count(*) FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE w.url LIKE '%/dead' AND d.status = 'pending'")
    assert dead_pending == 30, "every event waits for the dead endpoint, none was dropped"


async def test_an_endpoint_that_keeps_failing_is_paused_then_probed(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url("/down"))
    events = await record_events(pool, await org_of(pool, endpoint), 20)
    receiver.script["/down"] = [503] * 8
    dispatcher.settings = dataclasses.replace(dispatcher.settings, endpoint_concurrency=4)

    # Four at a time (WEBHOOK_ENDPOINT_CONCURRENCY): eight failures in a row open the circuit.
    assert await dispatcher.drain() == 8
    await dispatcher.measure_queue()
    registry = dispatcher.metrics.registry
    assert registry.get_sample_value("scanroute_webhook_endpoints", {"state": "paused"}) == 1
    assert registry.get_sample_value("scanroute_webhook_endpoints", {"state": "failing"}) == 1
    untried = await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1"
                                  " AND attempt_count = 0 AND status = 'pending'", endpoint["id"])
    assert untried == 12, "the deliveries behind the open circuit spent none of their attempts"

    clock.advance(timedelta(minutes=3))  # the failed ones are due again (30 s), but the pause is 4 min
    assert await dispatcher.drain() == 0
    clock.advance(timedelta(minutes=1, seconds=1))
    # One probe; it succeeds, the circuit closes, and everything waiting goes, four at a time.
    assert await dispatcher.drain() == 20
    assert len(receiver.at("/down")) == 28
    assert {orjson.loads(r.body)["id"] for r in receiver.at("/down")} == events
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'") == 20
    await dispatcher.measure_queue()
    assert registry.get_sample_value("scanroute_webhook_endpoints", {"state": "paused"}) == 0


async def test_claims_go_round_organisations_and_endpoints_within_their_bounds(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any]) -> None:
    busy_key = await make_key(scopes=WEBHOOK_SCOPES)
    busy = [await create_endpoint(api, busy_key, receiver.url(f"/busy{n}")) for n in range(3)]
    await record_events(pool, await org_of(pool, busy[0]), 4)  # 12 deliveries
    other_key = await make_key("globex", scopes=WEBHOOK_SCOPES)
    other = await create_endpoint(api, other_key, receiver.url("/other"))
    await record_events(pool, await org_of(pool, other), 3)
    dispatcher.settings = dataclasses.replace(dispatcher.settings, endpoint_concurrency=2, org_concurrency=5)
    await dispatcher.fan_out()

    def per_endpoint(rows: list[asyncpg.Record]) -> list[int]:
        return [sum(r["endpoint_id"] == e["id"] for r in rows) for e in [*busy, other]]

    first = per_endpoint(await dispatcher.claim(6))
    # Every organisation's first before anyone's second; the busy one's spread over its endpoints.
    assert sorted(first[:3]) == [1, 1, 2] and first[3] == 2
    # What is left: one more for the busy organisation (5 in flight), none for /other (2 in flight).
    second = per_endpoint(await dispatcher.claim(100))
    assert sum(second[:3]) == 1 and second[3] == 0
    assert all(a + b <= 2 for a, b in zip(first, second, strict=True))
    assert await dispatcher.claim(100) == []


async def test_fan_out_gives_every_organisation_its_turn(
        make_key: KeyFactory, dispatcher: Dispatcher, pool: asyncpg.Pool[Any], clock: FrozenClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fan_out, "MAX_PAIRS", 1)  # one pair looked at per round, one event per turn
    monkeypatch.setattr(fan_out, "PAIR_BATCH", 1)
    orgs = []
    for name in ("acme", "globex", "initech"):
        await make_key(name)
        orgs.append(await pool.fetchval("SELECT id FROM organisations WHERE name = $1", name))
        await record_events(pool, orgs[-1], 2)

    served = []
    for _ in range(6):
        clock.advance(timedelta(seconds=1))
        assert await dispatcher.fan_out() == 1
        served.append(await pool.fetchval("SELECT org_id FROM events WHERE dispatched_at IS NOT NULL"
                                          " ORDER BY dispatched_at DESC LIMIT 1"))
    assert sorted(served[:3]) == sorted(orgs) and served[3:] == served[:3], "in turn, round and round"
    assert await dispatcher.fan_out() == 0


async def test_a_test_event_ends_the_pause_and_probes_at_once(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url("/fixed"))
    await record_events(pool, await org_of(pool, endpoint), 5)
    receiver.script["/fixed"] = [503] * 5
    dispatcher.settings = dataclasses.replace(dispatcher.settings, endpoint_concurrency=5)
    assert await dispatcher.drain() == 5  # five failures in a row: paused for 30 s

    # The receiver is fixed; its owner sends a test event rather than wait for the pause to end.
    sent = await api.post(f"/v1/webhook-endpoints/{endpoint['id']}/test", headers=bearer(key))
    assert sent.status_code == 202, sent.text
    clock.advance(timedelta(seconds=5))  # the API queued it at the database's now, after the clock stopped
    assert await dispatcher.drain() == 1
    [probe] = receiver.requests[5:]
    assert orjson.loads(probe.body)["type"] == "webhook_endpoint.test"
    closed = await pool.fetchrow("SELECT consecutive_failures, paused_until FROM webhook_endpoints WHERE id = $1",
                                 endpoint["id"])
    assert closed["consecutive_failures"] == 0 and closed["paused_until"] is None


async def test_pointing_a_paused_endpoint_elsewhere_closes_its_circuit(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url("/old"))
    await record_events(pool, await org_of(pool, endpoint), 10)
    receiver.script["/old"] = [503] * 10
    dispatcher.settings = dataclasses.replace(dispatcher.settings, endpoint_concurrency=5)
    assert await dispatcher.drain() == 5  # five failures in a row: paused for 30 s, five more waiting

    moved = await api.patch(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(key),
                            json={"url": receiver.url("/new")})
    assert moved.status_code == 200, moved.text
    clock.advance(timedelta(seconds=10))  # the pause would last another 20 s
    assert await dispatcher.drain() == 5
    assert len(receiver.at("/new")) == 5
