"""The dispatcher rides out a PostgreSQL outage: a real TCP proxy in front of the real server is cut."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from shared.database import create_pool
from shared.settings import WebhookSettings
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
    create_group,
    deliveries,
    eventually,
    loops_running,
)
from tests.pg_proxy import Proxy


async def test_deliveries_resume_when_postgresql_returns(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        database_url: str, proxy: Proxy) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    pool = await create_pool(proxy.url(database_url), min_size=0, max_size=4)
    settings = dataclasses.replace(webhook_settings, concurrency=4, poll_interval=0.05)
    dispatcher = Dispatcher(settings, pool, create_session(webhook_settings.delivery_timeout))
    try:
        async with loops_running(dispatcher, stop_within=15) as running:
            await create_group(api, key, "before the outage")
            await eventually(lambda: len(receiver.requests) == 1)
            deadline = time.monotonic() + 30
            while (await deliveries(api, key, endpoint["id"]))[0]["status"] != "succeeded":  # recorded, too
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)

            await proxy.cut()
            await create_group(api, key, "during the outage")  # committed directly, not through the proxy
            await asyncio.sleep(1.0)
            assert not running.done(), "the dispatcher must not die with its database"
            assert len(receiver.requests) == 1

            await proxy.start()
            await eventually(lambda: any(b"during the outage" in r.body for r in receiver.requests))
    finally:
        await pool.close()


async def test_an_outage_longer_than_the_lease_neither_resends_nor_loses_the_attempt_in_hand(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    """The attempt ends while PostgreSQL is away, the lease runs out meanwhile, and when PostgreSQL is back
    the sender's claim comes before the recorder's retry (both back off on their own). The outage is the
    driver's own error (a refused connection) raised from the dispatcher's two calls to PostgreSQL, so that
    the order of their return is the one that went wrong; the database behind them is real."""
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    receiver.script["/hook"] = [500, 200, 200]
    receiver.hold = {"/hook"}
    settings = dataclasses.replace(webhook_settings, concurrency=4, poll_interval=0.05)
    dispatcher = Dispatcher(settings, pool, create_session(settings.delivery_timeout), clock=clock,
                            jitter=lambda: 0.5)
    down = {"claim": False, "record": False}
    record_failures = 0
    real_claim, real_record = dispatcher.claim, dispatcher.record

    async def claim(room: int) -> Any:
        if down["claim"]:
            raise ConnectionRefusedError("PostgreSQL unreachable")
        return await real_claim(room)

    async def record(outcomes: Any) -> Any:
        nonlocal record_failures
        if down["record"]:
            record_failures += 1
            raise ConnectionRefusedError("PostgreSQL unreachable")
        return await real_record(outcomes)

    dispatcher.claim = claim  # type: ignore[method-assign]
    dispatcher.record = record  # type: ignore[method-assign]
    async with loops_running(dispatcher, stop_within=30):
        await create_group(api, key)
        await eventually(lambda: len(receiver.requests) == 1)  # the attempt is in flight
        down["claim"] = down["record"] = True
        receiver.hold = set()
        receiver.release.set()  # the receiver answers 500 while PostgreSQL is away
        await eventually(lambda: record_failures >= 1)
        clock.advance(timedelta(seconds=settings.lease + 1))  # the outage outlasts the lease
        down["claim"] = False
        await asyncio.sleep(1.0)
        assert len(receiver.requests) == 1, "the dispatcher sent again a delivery it still held"
        down["record"] = False
        # The 500 is recorded; its retry is due (the clock moved past it), is sent and succeeds.
        deadline = time.monotonic() + 10
        while (delivery := (await deliveries(api, key, endpoint["id"]))[0])["status"] == "pending":
            assert time.monotonic() < deadline, f"still pending after attempts {delivery['attempts']}"
            await asyncio.sleep(0.05)
        assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
        assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 2
        assert len(receiver.requests) == 2
