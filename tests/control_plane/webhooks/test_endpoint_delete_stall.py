"""Deleting one organisation's webhook endpoint stalls nobody else's claims, fan-out or recording
(docs/webhooks.md, "Fairness: no organisation holds up another").

The endpoint's row is deleted once its log is gone (docs/webhooks.md, "Deleting an endpoint"); that DELETE under
way is modelled by a transaction that has deleted the row and not committed yet, here with the log still there
(the cascade over it is what a DELETE from before the batched removal did). Each step under test gets 5 s, where
it needs milliseconds.
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

from control_plane.webhooks.delivery import AttemptResult
from control_plane.webhooks.dispatcher import Dispatcher, Outcome
from shared.settings import WebhookSettings
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
)
from tests.control_plane.webhooks.test_fairness import eventually, org_of, record_events, running

STEP_S = 5.0


@contextlib.asynccontextmanager
async def being_deleted(database_url: str, endpoint_id: str) -> AsyncIterator[None]:
    """An endpoint's DELETE under way (not committed) for the duration of the block; rolled back after it."""
    conn = await asyncpg.connect(database_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)
        try:
            yield
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def succeeded(pool: asyncpg.Pool[Any], endpoint: dict[str, Any]) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1"
                                     " AND status = 'succeeded'", endpoint["id"])
    return count


async def until_succeeded(pool: asyncpg.Pool[Any], endpoint: dict[str, Any], expected: int) -> None:
    deadline = time.monotonic() + STEP_S
    while (count := await succeeded(pool, endpoint)) != expected:
        assert time.monotonic() < deadline, f"{count} of {expected} deliveries to {endpoint['url']} recorded"
        await asyncio.sleep(0.02)


async def two_organisations(api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver,
                            pool: asyncpg.Pool[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An endpoint about to be deleted with three events, another organisation's endpoint with one."""
    doomed = await create_endpoint(api, await make_key(scopes=WEBHOOK_SCOPES), receiver.url("/doomed"))
    other = await create_endpoint(api, await make_key("globex", scopes=WEBHOOK_SCOPES), receiver.url("/other"))
    await record_events(pool, await org_of(pool, doomed), 3)
    await record_events(pool, await org_of(pool, other), 1)
    return doomed, other


async def test_claims_for_other_organisations_go_on_while_an_endpoint_is_being_deleted(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], database_url: str, clock: FrozenClock) -> None:
    doomed, other = await two_organisations(api, make_key, receiver, pool)
    clock.advance(timedelta(seconds=5))
    assert await dispatcher.fan_out() == 4

    async with being_deleted(database_url, doomed["id"]):
        claimed = await asyncio.wait_for(dispatcher.claim(10), STEP_S)

    assert {r["endpoint_id"] for r in claimed} == {other["id"]}


async def test_fan_out_for_other_organisations_goes_on_while_an_endpoint_is_being_deleted(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], database_url: str, clock: FrozenClock) -> None:
    doomed, other = await two_organisations(api, make_key, receiver, pool)
    clock.advance(timedelta(seconds=5))

    async with being_deleted(database_url, doomed["id"]):
        await asyncio.wait_for(dispatcher.fan_out(), STEP_S)
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", other["id"]) == 1

    # The DELETE rolled back: the endpoint's events waited in the outbox, and none is lost.
    await dispatcher.fan_out()
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", doomed["id"]) == 3


async def test_recording_for_other_organisations_goes_on_while_an_endpoint_is_being_deleted(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], database_url: str, clock: FrozenClock) -> None:
    doomed, other = await two_organisations(api, make_key, receiver, pool)
    clock.advance(timedelta(seconds=5))
    await dispatcher.fan_out()
    outcomes = [Outcome(row, clock.now, AttemptResult(200, 5, None, "ok")) for row in await dispatcher.claim(10)]

    async with being_deleted(database_url, doomed["id"]):
        later = await asyncio.wait_for(dispatcher.record(outcomes), STEP_S)

    assert {o.delivery["endpoint_id"] for o in later} == {doomed["id"]}
    assert await succeeded(pool, other) == 1
    # Recorded again once the DELETE is over (here: rolled back), the doomed endpoint's outcomes land too.
    assert await dispatcher.record(later) == []
    assert await succeeded(pool, doomed) == 3


async def test_a_running_dispatcher_records_the_others_meanwhile_and_the_endpoints_own_outcomes_after(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], database_url: str) -> None:
    """Attempts at the endpoint were under way when its DELETE began; they end while it runs."""
    receiver.hold.add("/doomed")
    doomed, other = await two_organisations(api, make_key, receiver, pool)
    settings = dataclasses.replace(webhook_settings, poll_interval=0.05)

    async with running(settings, database_url):
        await eventually(lambda: receiver.in_flight.get("/doomed", 0) == 3, timeout=STEP_S)
        async with being_deleted(database_url, doomed["id"]):
            receiver.release.set()
            await eventually(lambda: receiver.in_flight.get("/doomed", 0) == 0, timeout=STEP_S)
            await record_events(pool, await org_of(pool, other), 1)
            await until_succeeded(pool, other, 2)
        await until_succeeded(pool, doomed, 3)

    assert len(receiver.at("/doomed")) == 3, "recorded late, not sent again"

