"""The usage meter (docs/api.md §2.9): one `qr_generated` per created code, counted per calendar month (UTC)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import asyncpg
from typing_extensions import TypedDict

from control_plane.services.keys import ApiKey
from shared.problems import Problem

# plan → (codes included per month, overage price per code in USD; None = hard cap)
PLANS: dict[str, tuple[int | None, Decimal | None]] = {
    "free": (25, None),
    "developer": (1_000, Decimal("0.05")),
    "scale": (25_000, Decimal("0.03")),
    "enterprise": (None, Decimal("0")),
}


class UsagePublic(TypedDict):
    object: Literal["usage"]
    plan: str
    period_start: str
    period_end: str
    qr_generated: int
    included: int | None  # None: unlimited
    overage: int
    overage_cost_usd: float


def period(today: date | None = None) -> tuple[date, date]:
    """First day of this month and of the next one."""
    today = today or datetime.now(UTC).date()
    start = today.replace(day=1)
    end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, end


async def meter_created(conn: asyncpg.Connection[Any], key: ApiKey, count: int) -> None:
    """Count `count` new codes in the caller's transaction; the free plan's cap refuses with 402.

    Test-mode codes are free and not metered.
    """
    if not key.livemode or count <= 0:
        return
    start, _ = period()
    plan = await conn.fetchval("SELECT plan FROM organisations WHERE id = $1", key.org_id)
    total = await conn.fetchval(
        "INSERT INTO usage_counters (org_id, period_start, qr_generated) VALUES ($1, $2, $3)"
        " ON CONFLICT (org_id, period_start) DO UPDATE"
        " SET qr_generated = usage_counters.qr_generated + EXCLUDED.qr_generated RETURNING qr_generated",
        key.org_id, start, count)
    included, price = PLANS[plan]
    if price is None and included is not None and total > included:
        raise Problem(402, f"The {plan} plan includes {included} codes per month and this request would make "
                      f"{total}. Upgrade the plan to create more.", type="quota-exceeded")


async def usage(conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], key: ApiKey) -> UsagePublic:
    """The `usage` object of the caller's organisation for this calendar month (test mode counts nothing)."""
    start, end = period()
    row = await conn.fetchrow(
        "SELECT o.plan, COALESCE(u.qr_generated, 0) AS qr_generated FROM organisations o"
        " LEFT JOIN usage_counters u ON u.org_id = o.id AND u.period_start = $2 WHERE o.id = $1",
        key.org_id, start)
    assert row is not None, "an API key's organisation always exists"
    included, price = PLANS[row["plan"]]
    generated = row["qr_generated"] if key.livemode else 0
    overage = max(0, generated - included) if included is not None else 0
    return {
        "object": "usage", "plan": row["plan"], "period_start": f"{start.isoformat()}T00:00:00Z",
        "period_end": f"{end.isoformat()}T00:00:00Z", "qr_generated": generated, "included": included,
        "overage": overage, "overage_cost_usd": float((price or 0) * overage),
    }
