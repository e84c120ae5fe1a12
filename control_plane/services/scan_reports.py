"""Scan analytics of one of the caller's codes or groups: the range rules, then `analytics.scan_analytics`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from control_plane.services.analytics import ScanAnalyticsPublic, ScanFilter, scan_analytics
from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.qr_codes import fetch_code
from control_plane.services.qr_groups import fetch_group
from shared.problems import field_error
from shared.times import parse_rfc3339

DEFAULT_RANGE = timedelta(days=30)
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=3660)}
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class AnalyticsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    since: Timestamp | None = Field(None, description="start (inclusive), RFC 3339 with a time zone; "
                                                      "default: until - 30 days")
    until: Timestamp | None = Field(None, description="end (exclusive); default: now")
    group_by: Literal["day", "hour"] = Field(
        "day", description=f"timeseries bucket; a range covers at most {MAX_RANGE['hour'].days} days by hour, "
                           f"{MAX_RANGE['day'].days} days by day")
    limit: Annotated[int, Field(ge=1, le=50, description="entries per breakdown")] = 10


def _instant(name: str, raw: str | None, default: datetime) -> datetime:
    if raw is None:
        return default
    try:
        value = parse_rfc3339(raw)
    except ValueError as exc:
        raise field_error(name, str(exc)) from None
    value = value.astimezone(UTC).replace(microsecond=0)
    if not EARLIEST <= value <= LATEST:
        raise field_error(name, "must be between 1970-01-01 and 9999-01-01")
    return value


def scan_filter(key: ApiKey, column: str, object_id: str, query: AnalyticsQuery) -> ScanFilter:
    until = _instant("until", query.until, datetime.now(UTC).replace(microsecond=0))
    since = _instant("since", query.since, until - DEFAULT_RANGE)
    if since >= until:
        raise field_error("since", "must be before until")
    if until - since > MAX_RANGE[query.group_by]:
        raise field_error("since", f"a range by {query.group_by} covers at most {MAX_RANGE[query.group_by].days} days")
    return ScanFilter(column, object_id, key.org_id, key.livemode, since, until)


async def code_scans(ctx: ServiceContext, key: ApiKey, code_id: str, query: AnalyticsQuery) -> ScanAnalyticsPublic:
    """404 unless the caller's live (not deleted) code."""
    f = scan_filter(key, "code_id", code_id, query)
    await fetch_code(ctx.db, key, code_id)
    return await scan_analytics(ctx.db, f, query.group_by, query.limit)


async def group_scans(ctx: ServiceContext, key: ApiKey, group_id: str, query: AnalyticsQuery) -> ScanAnalyticsPublic:
    """Every scan made while a code belonged to the group; 404 unless the caller's group."""
    f = scan_filter(key, "group_id", group_id, query)
    await fetch_group(ctx.db, key, group_id)
    return await scan_analytics(ctx.db, f, query.group_by, query.limit)
