"""Deleting a webhook endpoint answers at once; its delivery log goes afterwards, in short batches, while its
organisation's other endpoints go on receiving events (docs/webhooks.md, "Deleting an endpoint").

No step is timed: each is bounded by STEP_S only so that a step that waits on a lock fails instead of hanging.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx

from control_plane.webhooks.dispatcher import Dispatcher
from control_plane.webhooks.purge import PURGE_BATCH, purge_batch
from tests.conftest import KeyFactory, bearer
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, FrozenClock, Receiver, create_endpoint
from tests.control_plane.webhooks.test_fairness import org_of, record_events

STEP_S = 5.0


async def fill_log(pool: asyncpg.Pool[Any], endpoint_id: str, count: int, now: datetime) -> None:
    """`count` deliveries of the endpoint, one in five still pending and due (more than WEBHOOK_ORG_QUEUE when
    `count` is 50,000), every tenth with an attempt."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status, attempt_count, next_attempt_at,"
            " created_at, updated_at)"
            " SELECT $1 || n, $2, 'evt_old' || n, CASE WHEN n % 5 = 0 THEN 'pending' ELSE 'succeeded' END, 1,"
            " CASE WHEN n % 5 = 0 THEN $3::timestamptz END, $3, $3 FROM generate_series(1, $4) n",
            f"whd_{endpoint_id}_", endpoint_id, now, count)
        await conn.execute(
            "INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, latency_ms)"
            " SELECT $1 || n, $2, 200, 5 FROM generate_series(1, $3, 10) n", f"whd_{endpoint_id}_", now, count)


async def log_of(pool: asyncpg.Pool[Any], endpoint_id: str) -> tuple[int, int, int]:
    """The endpoint's rows left: its own (0 or 1), its deliveries, their attempts."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM webhook_endpoints WHERE id = $1) AS endpoint,"
        " (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1) AS deliveries,"
        " (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
        "  WHERE d.endpoint_id = $1) AS attempts", endpoint_id)
    assert row is not None
    return row["endpoint"], row["deliveries"], row["attempts"]


async def purge_all(dispatcher: Dispatcher) -> int:
    """Batches until nothing is left to remove now; returns how many batches removed something."""
    batches = 0
    while await dispatcher.purge_deleted():
        batches += 1
    return batches


async def test_the_delete_answers_at_once_though_a_delivery_of_the_endpoint_is_held(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], database_url: str, clock: FrozenClock) -> None:
    """A delivery row held by another transaction (a recorder, a retention batch) no longer holds up the DELETE,
    nor, through it, the organisation's fan-out: the log's removal skips that row and takes it later."""
    key = await make_key(scopes=WEBHOOK_SCOPES)
    doomed = await create_endpoint(api, key, receiver.url("/doomed"))
    other = await create_endpoint(api, key, receiver.url("/other"))
    await fill_log(pool, doomed["id"], 10, clock.now)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT 1 FROM webhook_deliveries WHERE id = $1 FOR UPDATE", f"whd_{doomed['id']}_1")

            deleted = await asyncio.wait_for(
                api.delete(f"/v1/webhook-endpoints/{doomed['id']}", headers=bearer(key)), STEP_S)
            assert deleted.status_code == 204, deleted.text
            clock.advance(timedelta(seconds=5))
            events = await record_events(pool, await org_of(pool, other), 2)
            assert await asyncio.wait_for(dispatcher.fan_out(), STEP_S) == 2
            assert await asyncio.wait_for(purge_all(dispatcher), STEP_S) == 1  # the 9 rows not held
            assert await log_of(pool, doomed["id"]) == (1, 1, 1)
    finally:
        await holder.close()

    assert {r["event_id"] for r in await pool.fetch("SELECT event_id FROM webhook_deliveries WHERE endpoint_id = $1",
                                                     other["id"])} == events
    assert await purge_all(dispatcher) == 2  # the row held before, then the endpoint's own
    assert await log_of(pool, doomed["id"]) == (0, 0, 0)


async def test_a_deleted_endpoints_log_goes_in_batches_while_the_organisations_other_endpoint_receives_events(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        pool: asyncpg.Pool[Any], database_url: str, clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    doomed = await create_endpoint(api, key, receiver.url("/doomed"))
    other = await create_endpoint(api, key, receiver.url("/other"))
    org_id = await org_of(pool, doomed)
    await fill_log(pool, doomed["id"], 50_000, clock.now)
    assert await log_of(pool, doomed["id"]) == (1, 50_000, 5_000)

    deleted = await api.delete(f"/v1/webhook-endpoints/{doomed['id']}", headers=bearer(key))
    assert deleted.status_code == 204 and deleted.content == b""
    # Gone for the API at once, as documented: 404 for it, its deliveries and a second delete; not listed.
    for response in (await api.get(f"/v1/webhook-endpoints/{doomed['id']}", headers=bearer(key)),
                     await api.get(f"/v1/webhook-endpoints/{doomed['id']}/deliveries", headers=bearer(key)),
                     await api.post(f"/v1/webhook-endpoints/{doomed['id']}/test", headers=bearer(key)),
                     await api.delete(f"/v1/webhook-endpoints/{doomed['id']}", headers=bearer(key))):
        assert response.status_code == 404, response.text
    listed = (await api.get("/v1/webhook-endpoints", headers=bearer(key))).json()
    assert [e["id"] for e in listed["data"]] == [other["id"]] and listed["total"] == 1
    assert await log_of(pool, doomed["id"]) == (1, 50_000, 5_000), "the request removed none of the log"

    clock.advance(timedelta(seconds=5))
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():  # one batch of the removal, under way (committed at the end of the block)
            assert await purge_batch(holder) == PURGE_BATCH
            # The organisation's other endpoint: its events are fanned out, claimed, sent and recorded meanwhile.
            # The deleted endpoint's 10,000 pending deliveries fill no queue, and none is claimed or sent.
            events = await record_events(pool, org_id, 3)
            assert await asyncio.wait_for(dispatcher.fan_out(), STEP_S) == 3
            assert await asyncio.wait_for(dispatcher.deliver_due(), STEP_S) == 3
            # Other batches go on beside it, skipping the rows it holds.
            assert await asyncio.wait_for(dispatcher.purge_deleted(), STEP_S) == PURGE_BATCH
    finally:
        await holder.close()

    assert {r.headers["webhook-id"] for r in receiver.at("/other")} == events
    assert receiver.at("/doomed") == []
    assert {d["status"] for d in (await api.get(f"/v1/webhook-endpoints/{other['id']}/deliveries",
                                                headers=bearer(key))).json()["data"]} == {"succeeded"}
    assert (await log_of(pool, doomed["id"]))[:2] == (1, 50_000 - 2 * PURGE_BATCH)

    batches = await purge_all(dispatcher)
    assert batches == (50_000 - 2 * PURGE_BATCH) // PURGE_BATCH + 1  # bounded batches, then the endpoint's row
    assert await log_of(pool, doomed["id"]) == (0, 0, 0)
    assert await log_of(pool, other["id"]) == (1, 3, 3)
