"""The delivery log keeps finished deliveries for WEBHOOK_LOG_RETENTION_DAYS (docs/webhooks.md, "Delivery log")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from control_plane.webhooks.dispatcher import Dispatcher
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
    deliveries,
)
from tests.control_plane.webhooks.test_fairness import org_of, record_events


async def test_finished_deliveries_past_the_retention_go_and_pending_ones_stay(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    assert dispatcher.settings.log_retention_days == 30
    key = await make_key(scopes=WEBHOOK_SCOPES)
    up = await create_endpoint(api, key, receiver.url("/up"))
    down = await create_endpoint(api, key, receiver.url("/down"))
    receiver.script["/down"] = [503] * 100
    org_id = await org_of(pool, up)
    clock.advance(timedelta(seconds=5))
    old_events = await record_events(pool, org_id, 2)
    await dispatcher.drain()

    clock.advance(timedelta(days=31))
    new_events = await record_events(pool, org_id, 1)
    await dispatcher.drain()
    assert await dispatcher.prune_log() == 2

    assert {d["event_id"] for d in await deliveries(api, key, up["id"])} == new_events
    kept = {d["event_id"]: d["status"] for d in await deliveries(api, key, down["id"])}
    assert kept == dict.fromkeys(old_events | new_events, "pending")  # the down endpoint's, never finished
    assert await pool.fetchval("SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d"
                               " ON d.id = a.delivery_id WHERE d.endpoint_id = $1", up["id"]) == 1
    assert await dispatcher.prune_log() == 0
