"""The delivery log's retention: finished deliveries, with their attempts, go once older than the retention.

An endpoint taking 10 events a second writes close to a million deliveries a day; kept forever, the log
grows without end and so does the DELETE of its endpoint, which cascades over all of it. Pending
deliveries (a retry scheduled, or parked behind a disabled endpoint) are never removed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

PRUNE_BATCH = 1000  # deliveries removed per transaction, each with its attempts (at most 12)

# Each endpoint's oldest first, along webhook_deliveries_endpoint (endpoint_id, created_at DESC).
EXPIRED = """
SELECT d.id FROM webhook_endpoints w CROSS JOIN LATERAL (
    SELECT id FROM webhook_deliveries
    WHERE endpoint_id = w.id AND created_at < $1 AND status <> 'pending'
    ORDER BY created_at LIMIT $2) d
LIMIT $2"""
# Rows another transaction holds (an endpoint's DELETE cascading) are left to it, not waited for.
DELETE_DELIVERIES = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE id = ANY ($1::text[]) FOR UPDATE SKIP LOCKED)"""


async def prune_batch(conn: Conn, created_before: datetime) -> int:
    """Removes up to PRUNE_BATCH finished deliveries created before `created_before`; returns how many."""
    expired = [r["id"] for r in await conn.fetch(EXPIRED, created_before, PRUNE_BATCH)]
    if not expired:
        return 0
    status = await conn.execute(DELETE_DELIVERIES, expired)  # "DELETE <count>"
    return int(status.split()[-1])
