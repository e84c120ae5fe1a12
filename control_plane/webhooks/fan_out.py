"""Fan-out: outbox events → one delivery per subscribed endpoint, fairly across organisations.

Events are taken per (organisation, mode) pair, going round the pairs that have undispatched events, so
a burst of one organisation's events (a free test-mode mint of 10,000 codes) does not queue ahead of
another's. A pair with `org_queue` deliveries pending gets no more: its further events stay in the
outbox, untouched and in order, until its deliveries finish; the other pairs go on. Deliveries of an
endpoint whose circuit is not closed do not count, so one dead receiver never holds its organisation's others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from control_plane.webhooks.schedule import CIRCUIT_AFTER
from shared.ids import new_id

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
Pair: TypeAlias = tuple[str, bool]  # (org_id, livemode)

MAX_PAIRS = 1000  # pairs looked at per round
PAIR_BATCH = 100  # events taken from one pair per turn

# A skip scan of events_undispatched_org: one index probe per pair, however many events each holds;
# the pairs after ($1, $2), in order.
PAIRS_AFTER = """
WITH RECURSIVE pairs AS (
    (SELECT org_id, livemode FROM events
     WHERE dispatched_at IS NULL AND (org_id, livemode) > ($1, $2) ORDER BY org_id, livemode LIMIT 1)
    UNION ALL
    SELECT n.org_id, n.livemode FROM pairs p CROSS JOIN LATERAL (
        SELECT org_id, livemode FROM events
        WHERE dispatched_at IS NULL AND (org_id, livemode) > (p.org_id, p.livemode)
        ORDER BY org_id, livemode LIMIT 1) n)
SELECT org_id, livemode FROM pairs LIMIT $3"""
# Pending deliveries that will be sent soon, counted no further than the bound. Parked ones (a disabled
# endpoint) and those of an endpoint whose circuit is not closed do not count: a dead receiver's backlog
# waits on its own and never holds the organisation's other endpoints. Not closed means paused or half
# open — its pause is over (at most 10 min), but its next retry may be hours away, and until a probe
# succeeds its backlog is still a dead receiver's.
PENDING_OF_PAIR = f"""
SELECT count(*) FROM (
    SELECT 1 FROM webhook_endpoints w JOIN webhook_deliveries d ON d.endpoint_id = w.id
    WHERE w.org_id = $1 AND w.livemode = $2 AND w.consecutive_failures < {CIRCUIT_AFTER} AND w.deleted_at IS NULL
      AND d.status = 'pending' AND d.next_attempt_at IS NOT NULL
    LIMIT $3) pending"""
CLAIM_EVENTS = """
SELECT seq, id FROM events WHERE org_id = $1 AND livemode = $2 AND dispatched_at IS NULL
ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED"""
# Endpoints subscribe from their creation on; an endpoint never receives events from before it existed, nor
# any once it is deleted (its pending deliveries do not count against its organisation's queue either).
SUBSCRIBERS = """
SELECT e.id AS event_id, w.id AS endpoint_id
FROM events e JOIN webhook_endpoints w
  ON w.org_id = e.org_id AND w.livemode = e.livemode AND w.enabled AND w.deleted_at IS NULL
 AND w.created_at <= e.created_at
 AND (e.type = ANY (w.events) OR '*' = ANY (w.events))
WHERE e.id = ANY ($1::text[])"""
# A delivery's row refers to its endpoint, and inserting it waits for a DELETE of that endpoint's row to end.
# The endpoints are locked first, skipping the ones another transaction is deleting: the events for those wait
# in the outbox, and the round goes on with everyone else. (An API delete only marks the endpoint, which
# does not conflict with this lock; the row goes once its log is gone, by then in no SUBSCRIBERS.)
LOCK_SUBSCRIBERS = "SELECT id FROM webhook_endpoints WHERE id = ANY ($1::text[]) FOR KEY SHARE SKIP LOCKED"
CREATE_DELIVERIES = """
INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at, created_at, updated_at)
SELECT d.id, d.event_id, d.endpoint_id, $4, $4, $4 FROM unnest($1::text[], $2::text[], $3::text[])
    AS d (id, event_id, endpoint_id)
ON CONFLICT (event_id, endpoint_id) DO NOTHING"""
MARK_DISPATCHED = "UPDATE events SET dispatched_at = $2 WHERE seq = ANY ($1::bigint[])"


@dataclass
class FanOutRound:
    """What one call did: events dispatched, and the pairs whose events wait for their queue to shrink."""

    dispatched: int = 0
    held: set[Pair] = field(default_factory=set)


async def pairs_in_turn(conn: Conn, after: Pair | None) -> list[Pair]:
    """Up to MAX_PAIRS pairs with undispatched events, starting after `after` and wrapping round."""
    start: Pair = after or ("", False)
    pairs = [(r["org_id"], r["livemode"]) for r in await conn.fetch(PAIRS_AFTER, *start, MAX_PAIRS)]
    if after is not None and len(pairs) < MAX_PAIRS:
        wrapped = await conn.fetch(PAIRS_AFTER, "", False, MAX_PAIRS - len(pairs))
        pairs += [(r["org_id"], r["livemode"]) for r in wrapped if (r["org_id"], r["livemode"]) <= after]
    return pairs


async def fan_out_round(conn: Conn, now: datetime, *, limit: int, org_queue: int,
                        after: Pair | None) -> tuple[FanOutRound, Pair | None]:
    """Dispatch up to about `limit` events, a turn per pair; returns the round and the last pair served."""
    done = FanOutRound()
    last = after
    for pair in await pairs_in_turn(conn, after):
        if done.dispatched >= limit:
            break
        last = pair
        room = org_queue - await conn.fetchval(PENDING_OF_PAIR, *pair, org_queue)
        if room <= 0:
            done.held.add(pair)
            continue
        events = await conn.fetch(CLAIM_EVENTS, *pair, min(PAIR_BATCH, limit - done.dispatched))
        if not events:
            continue
        subscribers: dict[str, list[str]] = {}
        for row in await conn.fetch(SUBSCRIBERS, [e["id"] for e in events]):
            subscribers.setdefault(row["event_id"], []).append(row["endpoint_id"])
        wanted = {endpoint for endpoints in subscribers.values() for endpoint in endpoints}
        being_deleted = wanted - {r["id"] for r in await conn.fetch(LOCK_SUBSCRIBERS, list(wanted))}
        # In order, while the deliveries fit in the room left (the first event always goes: a pair
        # below its bound overshoots by at most one event's deliveries), up to the first event for an
        # endpoint being deleted: it and the pair's later events wait for the next round.
        taken: list[asyncpg.Record] = []
        for event in events:
            needed = len(subscribers.get(event["id"], ()))
            if being_deleted.intersection(subscribers.get(event["id"], ())):
                break
            if taken and needed > room:
                done.held.add(pair)
                break
            taken.append(event)
            room -= needed
        if not taken:
            continue
        pairs_created = [(new_id("whd"), e["id"], endpoint) for e in taken for endpoint in subscribers.get(e["id"], ())]
        if pairs_created:
            ids, event_ids, endpoint_ids = (list(column) for column in zip(*pairs_created, strict=True))
            await conn.execute(CREATE_DELIVERIES, ids, event_ids, endpoint_ids, now)
        await conn.execute(MARK_DISPATCHED, [e["seq"] for e in taken], now)
        done.dispatched += len(taken)
    return done, last
