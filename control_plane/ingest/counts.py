"""`scan_count` on codes, and the `qr.scan_threshold` events fired when it first reaches 100, 1,000, ….

Runs inside the ingest transaction, with the counts of rows really inserted, so a redelivered batch bumps
nothing and fires nothing twice.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.outbox import record_event
from shared.scan_limits import refresh_codes

# Rows are locked in id order first: two workers bumping the same codes then never deadlock.
LOCK = "SELECT id FROM qr_codes WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
BUMP = """
WITH counts AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(id, n)),
bumped AS (
    UPDATE qr_codes c SET scan_count = c.scan_count + counts.n FROM counts WHERE c.id = counts.id
    RETURNING c.id, c.org_id, c.livemode, c.scan_count - counts.n AS before, c.scan_count AS after
)
SELECT b.id, b.org_id, b.livemode, b.after, t.threshold
FROM bumped b CROSS JOIN LATERAL (SELECT (10::numeric ^ k)::bigint AS threshold FROM generate_series(2, 18) k) t
WHERE b.before < t.threshold AND b.after >= t.threshold
ORDER BY b.id, t.threshold
"""


def threshold_object(code_id: str, scan_count: int, threshold: int) -> dict[str, Any]:
    """The event's `data.object`: the code's id and count, and the threshold it crossed."""
    return {"id": code_id, "object": "qr_code", "scan_count": scan_count, "threshold": threshold}


async def add_scans(conn: asyncpg.Connection[Any], counts: dict[str, int]) -> int:
    """Add human scans per code id; records one event per threshold crossed. Returns the events recorded."""
    counts = {code_id: n for code_id, n in counts.items() if n}
    if not counts:
        return 0
    ids = sorted(counts)
    await conn.execute(LOCK, ids)
    crossed = await conn.fetch(BUMP, ids, [counts[i] for i in ids])
    await refresh_codes(conn, ids)  # max_scans reached: the expiry sweep publishes the rows and announces it
    for row in crossed:
        await record_event(conn, row["org_id"], row["livemode"], "qr.scan_threshold",
                           threshold_object(row["id"], row["after"], row["threshold"]))
    return len(crossed)
