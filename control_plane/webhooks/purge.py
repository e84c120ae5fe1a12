"""Deleted endpoints' delivery logs, removed in batches (docs/webhooks.md, "Deleting an endpoint").

`DELETE /v1/webhook-endpoints/{id}` only marks the endpoint (`deleted_at`): from then on it gets no fan-out
and no claims, and the API answers 404 for it. Its deliveries, with their attempts, go here, PURGE_BATCH
per transaction, each transaction short; once none is left, the endpoint's row goes too. The rows another
transaction holds are skipped, not waited for, and taken by a later batch.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

PURGE_BATCH = 1000  # deliveries removed per transaction, each with its attempts (at most 12)

# The endpoint deleted longest ago first; along webhook_endpoints_deleted (a handful of rows at most).
DELETED_ENDPOINT = "SELECT id FROM webhook_endpoints WHERE deleted_at IS NOT NULL ORDER BY deleted_at, id LIMIT 1"
# Along webhook_deliveries_endpoint; attempts go with their delivery (ON DELETE CASCADE).
DELETE_BATCH = """
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"""
# Only once its log is gone, so that this DELETE cascades over nothing (or the few rows a fan-out that
# read the endpoint before it was marked added since); SKIP LOCKED: never waits behind a recorder.
DELETE_ENDPOINT = """
DELETE FROM webhook_endpoints WHERE id IN (
    SELECT id FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1) FOR UPDATE SKIP LOCKED)"""


async def purge_batch(conn: Conn, limit: int = PURGE_BATCH) -> int:
    """Removes up to `limit` deliveries of a deleted endpoint, or the endpoint's row once none is left; returns
    how many rows went (0: nothing to remove now). The caller holds the transaction."""
    endpoint_id = await conn.fetchval(DELETED_ENDPOINT)
    if endpoint_id is None:
        return 0
    removed = int((await conn.execute(DELETE_BATCH, endpoint_id, limit)).split()[-1])  # "DELETE <count>"
    if removed:
        return removed
    return int((await conn.execute(DELETE_ENDPOINT, endpoint_id)).split()[-1])
