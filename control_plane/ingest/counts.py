"""`scan_count` on codes, and the `qr.scan_threshold` events fired when it first reaches 100, 1,000, ….

Runs inside the ingest transaction, with the counts of rows really inserted, so a redelivered batch bumps
nothing and fires nothing twice.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.outbox import record_event
from shared.scan_limits import refresh_codes

# One statement: the rows are locked in id order first (two workers bumping the same codes then never
# deadlock), bumped, and the thresholds crossed and the codes with a scan limit (theirs or their group's)
# come back; only those need `refresh_codes`, as a count that only grows can only reach a limit.
BUMP = """
WITH counts AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(id, n)),
locked AS MATERIALIZED (SELECT id FROM qr_codes WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE),
bumped AS (
    UPDATE qr_codes c SET scan_count = c.scan_count + counts.n FROM counts JOIN locked USING (id)
    WHERE c.id = counts.id
    RETURNING c.id, c.org_id, c.livemode, c.scan_count - counts.n AS before, c.scan_count AS after, c.max_scans,
              c.group_id
)
SELECT * FROM (
    SELECT b.id, b.org_id, b.livemode, b.after, t.threshold,
           b.max_scans IS NOT NULL
           OR EXISTS (SELECT FROM qr_groups g WHERE g.id = b.group_id AND g.max_scans IS NOT NULL) AS limited
    FROM bumped b LEFT JOIN LATERAL (
        SELECT (10::numeric ^ k)::bigint AS threshold FROM generate_series(2, 18) k
    ) t ON b.before < t.threshold AND b.after >= t.threshold
) r
WHERE threshold IS NOT NULL OR limited
ORDER BY id, threshold
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
    rows = await conn.fetch(BUMP, ids, [counts[i] for i in ids])
    limited = sorted({row["id"] for row in rows if row["limited"]})
    if limited:
        await refresh_codes(conn, limited)  # max_scans reached: the expiry sweep publishes the rows and announces it
    crossed = [row for row in rows if row["threshold"] is not None]
    for row in crossed:
        await record_event(conn, row["org_id"], row["livemode"], "qr.scan_threshold",
                           threshold_object(row["id"], row["after"], row["threshold"]))
    return len(crossed)
