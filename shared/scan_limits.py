"""`max_scans` (docs/rules.md): a code's row is marked once its own human scans reach its effective limit.

The ingest worker re-checks the codes it counted scans for, the control plane the codes whose limit (or
group) changed. A mark that changes bumps the code's version, so the edge row written after it always wins
over an older copy of the row.
"""

from __future__ import annotations

from typing import Any

import asyncpg

_REFRESH = """
WITH effective AS (
    SELECT c.id, COALESCE(c.scan_count >= COALESCE(c.max_scans, g.max_scans), false) AS reached
    FROM qr_codes c LEFT JOIN qr_groups g ON g.id = c.group_id
    WHERE {where} AND c.deleted_at IS NULL AND c.kind = 'dynamic'
)
UPDATE qr_codes c SET scan_limit_reached_at = CASE WHEN e.reached THEN now() END,
    -- a code that can be scanned again may expire again later, and is announced again then
    expired_notified_at = CASE WHEN e.reached THEN c.expired_notified_at END,
    version = c.version + {bump}
FROM effective e
WHERE c.id = e.id AND e.reached <> (c.scan_limit_reached_at IS NOT NULL)
RETURNING c.id
"""
REFRESH_CODES = _REFRESH.format(where="c.id = ANY($1::text[])", bump=1)
REFRESH_CHANGED_CODE = _REFRESH.format(where="c.id = ANY($1::text[])", bump=0)
REFRESH_GROUP = _REFRESH.format(where="c.group_id = $1", bump=1)


async def refresh_codes(conn: asyncpg.Connection[Any], code_ids: list[str], *, bumped: bool = False) -> list[str]:
    """Marks or unmarks these codes; returns those whose mark changed. `bumped`: the caller's transaction
    has already raised their version (an API change of the code itself: one change, one version)."""
    if not code_ids:
        return []
    return [r["id"] for r in await conn.fetch(REFRESH_CHANGED_CODE if bumped else REFRESH_CODES, code_ids)]


async def refresh_group(conn: asyncpg.Connection[Any], group_id: str) -> list[str]:
    """The same for the codes of a group whose `max_scans` changed (only codes whose mark changes are
    touched: usually none, at most those at their limit)."""
    return [r["id"] for r in await conn.fetch(REFRESH_GROUP, group_id)]
