"""The recorder keeps recording: an attempt PostgreSQL will not take holds back no other organisation's."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from shared.settings import WebhookSettings
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
    create_group,
    deliveries,
    loops_running,
)
from tests.local_http import local_server

# Refuses, as PostgreSQL refuses a value it cannot store, every attempt of one endpoint's deliveries.
REFUSE_ATTEMPTS = """
CREATE FUNCTION refuse_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT endpoint_id FROM webhook_deliveries WHERE id = NEW.delivery_id) = '{endpoint}' THEN
        RAISE EXCEPTION 'this attempt cannot be stored';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_attempt BEFORE INSERT ON webhook_attempts FOR EACH ROW EXECUTE FUNCTION refuse_attempt();
"""


@pytest.fixture
async def nul_receiver() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, body=b"ok\x00")

    async with local_server([web.post("/hook", answer)]) as base:
        yield f"{base}/hook"


@pytest.fixture
async def running(webhook_settings: WebhookSettings, pool: asyncpg.Pool[Any],
                  clock: FrozenClock) -> AsyncIterator[Dispatcher]:
    """A dispatcher running its loops, as `scanroute webhooks` does."""
    settings = dataclasses.replace(webhook_settings, poll_interval=0.05)
    dispatcher = Dispatcher(settings, pool, create_session(settings.delivery_timeout), clock=clock,
                            jitter=lambda: 0.5)
    async with loops_running(dispatcher, stop_within=60):
        yield dispatcher


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_an_answer_with_a_nul_byte_is_recorded_and_holds_back_nobody(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, nul_receiver: str,
        running: Dispatcher) -> None:
    key_a = await make_key("org-a", scopes=WEBHOOK_SCOPES)
    key_b = await make_key("org-b", scopes=WEBHOOK_SCOPES)
    endpoint_a = await create_endpoint(api, key_a, nul_receiver)
    endpoint_b = await create_endpoint(api, key_b, receiver.url())

    await create_group(api, key_a, "A")
    await asyncio.sleep(0.5)
    await create_group(api, key_b, "B")  # another organisation's event, after A's

    async def b_succeeded() -> bool:
        found = await deliveries(api, key_b, endpoint_b["id"])
        return bool(found) and found[0]["status"] == "succeeded"

    assert await eventually(b_succeeded), "org B's delivery was never recorded"
    [a] = await deliveries(api, key_a, endpoint_a["id"])
    assert a["status"] == "succeeded" and [t["response_excerpt"] for t in a["attempts"]] == ["ok"]


async def test_an_attempt_postgresql_refuses_is_dropped_alone_and_sent_again(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, running: Dispatcher,
        pool: asyncpg.Pool[Any], clock: FrozenClock, caplog: pytest.LogCaptureFixture) -> None:
    key_a = await make_key("org-a", scopes=WEBHOOK_SCOPES)
    key_b = await make_key("org-b", scopes=WEBHOOK_SCOPES)
    endpoint_a = await create_endpoint(api, key_a, receiver.url("/a"))
    endpoint_b = await create_endpoint(api, key_b, receiver.url("/b"))
    await pool.execute(REFUSE_ATTEMPTS.format(endpoint=endpoint_a["id"]))

    await create_group(api, key_a, "A")
    await asyncio.sleep(0.5)
    await create_group(api, key_b, "B")

    async def b_succeeded() -> bool:
        found = await deliveries(api, key_b, endpoint_b["id"])
        return bool(found) and found[0]["status"] == "succeeded"

    assert await eventually(b_succeeded), "org B's delivery was never recorded"
    [a] = await deliveries(api, key_a, endpoint_a["id"])
    assert a["status"] == "pending" and a["attempts"] == [] and len(receiver.at("/a")) == 1
    assert f"webhook attempt of delivery {a['id']} not recorded, dropped" in caplog.text

    # Its lease runs out: it is sent again, as after a dispatcher that died (at least once).
    clock.advance(timedelta(seconds=running.settings.lease + 1))

    async def sent_again() -> bool:
        return len(receiver.at("/a")) == 2

    assert await eventually(sent_again), "the dropped attempt's delivery was not sent again"
