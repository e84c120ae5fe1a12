"""A dead endpoint's backlog, once its circuit pause is over and none of its retries is due yet, holds back
none of its organisation's other endpoints (docs/webhooks.md, "Fairness").

The pause lasts at most 10 min, but a failing delivery's retries come 32 min, 2 h, then 8 h apart: in between,
nothing probes the endpoint, and its circuit stays half open with its pause in the past.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import asyncpg
import httpx

from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from shared.settings import WebhookSettings
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
)
from tests.control_plane.webhooks.test_fairness import org_of, record_events

DEAD_BACKLOG = 5  # the organisation's whole queue (WEBHOOK_ORG_QUEUE)


async def test_a_dead_endpoints_scheduled_backlog_does_not_hold_the_other_endpoints_after_its_pause(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    dead = await create_endpoint(api, key, receiver.url("/dead"))
    await create_endpoint(api, key, receiver.url("/live"))
    org_id = await org_of(pool, dead)
    receiver.script["/dead"] = [503] * 10_000
    clock.advance(timedelta(seconds=5))
    await record_events(pool, org_id, DEAD_BACKLOG)
    settings = dataclasses.replace(webhook_settings, org_queue=DEAD_BACKLOG, endpoint_concurrency=8)
    session = create_session(settings.delivery_timeout)
    try:
        dispatcher = Dispatcher(settings, pool, session, clock=clock, jitter=lambda: 0.5)
        # Six hours of a dead receiver, a drain a minute: its deliveries spend their early attempts.
        for _ in range(6 * 60):
            await dispatcher.drain()
            clock.advance(timedelta(minutes=1))
        dead_state = await pool.fetchrow(
            "SELECT w.paused_until, min(d.next_attempt_at) AS next_due, count(*) AS pending"
            " FROM webhook_endpoints w JOIN webhook_deliveries d ON d.endpoint_id = w.id"
            " WHERE w.id = $1 AND d.status = 'pending' GROUP BY w.paused_until", dead["id"])
        assert dead_state["pending"] == DEAD_BACKLOG
        clock.now = max(clock.now, dead_state["paused_until"] + timedelta(seconds=1))
        assert clock.now < dead_state["next_due"], "the moment sought: pause over, no retry due yet"

        before = len(receiver.at("/live"))
        events = await record_events(pool, org_id, 1)
        await dispatcher.drain()
    finally:
        await session.close()

    assert {r.headers["webhook-id"] for r in receiver.at("/live")[before:]} == events, \
        "the live endpoint's new event waits behind the dead endpoint's scheduled backlog"
