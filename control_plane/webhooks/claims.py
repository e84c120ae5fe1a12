"""Which due deliveries a dispatcher sends next, and the leases that make them its own.

Every endpoint is its own queue (oldest due first). A claim takes, in one short transaction:

- from each endpoint whose circuit is closed, at most `endpoint_concurrency` deliveries in flight
  (one — a probe — once its circuit has opened and the pause is over; none while it is paused);
- for each organisation and mode, at most `org_concurrency` in flight;
- interleaved: every organisation's first delivery before any organisation's second, and within an
  organisation every endpoint's first before any endpoint's second; at most `room` in all.

"In flight" means leased, by any dispatcher: claims are serialised by an advisory lock so the counts
hold across processes. A lease ends when the attempt is recorded, or when it expires (a dispatcher
that died, or one that could not reach PostgreSQL for longer), after which the delivery is claimed and
sent again. Each claim names its leases with a token of its own (`leased_by`): an attempt's outcome
moves the delivery on only while the lease it was sent under still holds, and a dispatcher never claims
a delivery whose earlier attempt it has yet to record.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from control_plane.webhooks.schedule import CIRCUIT_AFTER

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

CLAIM_LOCK = 0x5CA9_0E0B  # pg_advisory_xact_lock key: one claim at a time, across dispatchers

CHOOSE = f"""
WITH leased AS (
    SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
    WHERE leased_until > $1 AND status = 'pending' GROUP BY endpoint_id),
pair_leased AS (
    SELECT w.org_id, w.livemode, sum(l.n) AS n FROM leased l JOIN webhook_endpoints w ON w.id = l.endpoint_id
    GROUP BY w.org_id, w.livemode),
open AS (
    SELECT w.id, w.org_id, w.livemode,
           (CASE WHEN w.consecutive_failures >= {CIRCUIT_AFTER} THEN 1 ELSE $3 END) - coalesce(l.n, 0) AS room
    FROM webhook_endpoints w LEFT JOIN leased l ON l.endpoint_id = w.id
    WHERE w.enabled AND w.deleted_at IS NULL AND (w.paused_until IS NULL OR w.paused_until <= $1)),
candidates AS (
    SELECT d.id, d.next_attempt_at, o.id AS endpoint_id, o.org_id, o.livemode,
           row_number() OVER (PARTITION BY o.id ORDER BY d.next_attempt_at, d.id) AS endpoint_rank
    FROM open o CROSS JOIN LATERAL (
        SELECT id, next_attempt_at FROM webhook_deliveries
        WHERE endpoint_id = o.id AND status = 'pending' AND next_attempt_at <= $1
          AND (leased_until IS NULL OR leased_until <= $1) AND NOT id = ANY ($5::text[])
        ORDER BY next_attempt_at LIMIT o.room) d
    WHERE o.room > 0),
ranked AS (
    SELECT c.*, row_number() OVER (PARTITION BY c.org_id, c.livemode
                                   ORDER BY c.endpoint_rank, c.next_attempt_at, c.endpoint_id) AS pair_rank
    FROM candidates c)
SELECT r.id FROM ranked r LEFT JOIN pair_leased p ON p.org_id = r.org_id AND p.livemode = r.livemode
WHERE r.pair_rank <= $4 - coalesce(p.n, 0)
ORDER BY r.pair_rank, r.endpoint_rank, r.next_attempt_at
LIMIT $2"""
# The conditions are checked again on the row as it is now: a delivery parked by the API, or whose endpoint
# was deleted, since CHOOSE read it is not leased. A row another transaction holds (a batch removing a
# deleted endpoint's log, a recorder) is skipped, not waited for: waiting would hold the claim lock, and
# every organisation's claims with it, for as long as that transaction runs.
LEASE = """
WITH leased AS (
    UPDATE webhook_deliveries SET leased_until = $3, leased_by = $4
    WHERE id IN (SELECT id FROM webhook_deliveries
                 WHERE id = ANY ($1::text[]) AND status = 'pending' AND next_attempt_at <= $2
                   AND endpoint_id NOT IN (SELECT id FROM webhook_endpoints WHERE deleted_at IS NOT NULL)
                 FOR UPDATE SKIP LOCKED)
    RETURNING id, event_id, endpoint_id, attempt_count, payload, leased_by)
SELECT d.id AS delivery_id, d.event_id, d.endpoint_id, d.attempt_count, d.payload, d.leased_by AS lease,
       w.url, w.secret, w.previous_secret, w.previous_secret_expires_at, w.org_id,
       e.id, e.type, e.livemode, e.created_at, e.data
FROM leased d
JOIN webhook_endpoints w ON w.id = d.endpoint_id
LEFT JOIN events e ON e.id = d.event_id"""


async def claim(conn: Conn, now: datetime, *, room: int, endpoint_concurrency: int, org_concurrency: int,
                lease_until: datetime, lease: str, holding: Collection[str] = ()) -> list[asyncpg.Record]:
    """Lease up to `room` due deliveries under the token `lease`, none of `holding` (the deliveries whose
    outcome the caller has yet to record); returns them with what sending needs."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        chosen = [r["id"] for r in await conn.fetch(CHOOSE, now, room, endpoint_concurrency, org_concurrency,
                                                    list(holding))]
        if not chosen:
            return []
        return list(await conn.fetch(LEASE, chosen, now, lease_until, lease))
