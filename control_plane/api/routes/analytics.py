"""`GET /v1/qr-codes/{id}/scans` and `GET /v1/qr-groups/{id}/scans` (API.md §2.8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, query_int
from control_plane.api.openapi import Query, operation
from control_plane.api.routes.qr_codes import fetch_code
from control_plane.api.routes.qr_groups import fetch_group
from control_plane.services.analytics import BUCKETS, ScanFilter, scan_analytics
from control_plane.services.keys import ApiKey
from shared.problems import field_error

DEFAULT_RANGE = timedelta(days=30)
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
MAX_RANGE = {"hour": timedelta(days=31), "day": timedelta(days=3660)}


def _instant(request: Request, name: str, default: datetime) -> datetime:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise field_error(name, "must be an RFC 3339 timestamp such as 2026-04-08T00:00:00Z") from None
    if value.tzinfo is None:
        raise field_error(name, "must include a time zone, such as Z or +02:00")
    value = value.astimezone(UTC).replace(microsecond=0)
    if not EARLIEST <= value <= LATEST:
        raise field_error(name, "must be between 1970-01-01 and 9999-01-01")
    return value


def _filter(request: Request, key: ApiKey, column: str, object_id: str) -> tuple[ScanFilter, str, int]:
    group_by = request.query_params.get("group_by", "day")
    if group_by not in BUCKETS:
        raise field_error("group_by", "must be day or hour")
    limit = query_int(request, "limit", 10, 1, 50)
    until = _instant(request, "until", datetime.now(UTC).replace(microsecond=0))
    since = _instant(request, "since", until - DEFAULT_RANGE)
    if since >= until:
        raise field_error("since", "must be before until")
    if until - since > MAX_RANGE[group_by]:
        raise field_error("since", f"{group_by}ly analytics cover at most {MAX_RANGE[group_by].days} days")
    return ScanFilter(column, object_id, key.org_id, key.livemode, since, until), group_by, limit


ANALYTICS_QUERY = (
    Query("since", {"type": "string", "format": "date-time"}, "start (inclusive); default: until - 30 days"),
    Query("until", {"type": "string", "format": "date-time"}, "end (exclusive); default: now"),
    Query("group_by", {"enum": ["day", "hour"], "default": "day"}, "timeseries bucket; hourly ranges ≤ 31 days"),
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 10}, "entries per breakdown"),
)


def _answer(request: Request, analytics: dict[str, Any]) -> Response:
    """JSON, or the timeseries as CSV for `Accept: text/csv` (spreadsheets, BI tools)."""
    if "text/csv" not in request.headers.get("accept", ""):
        return json_response(analytics)
    lines = ["bucket,scans,uniques"] + [f"{p['bucket']},{p['scans']},{p['uniques']}" for p in analytics["timeseries"]]
    return Response("\r\n".join(lines) + "\r\n", media_type="text/csv; charset=utf-8")


@operation("Scan analytics of a code", "qr:read", returns="ScanAnalytics", query=ANALYTICS_QUERY)
async def code_scans(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    code_id = request.path_params["code_id"]
    scan_filter, group_by, limit = _filter(request, key, "code_id", code_id)
    db = request.app.state.db
    await fetch_code(db, key, code_id)  # 404 unless the caller's live (not deleted) code
    return _answer(request, await scan_analytics(db, scan_filter, group_by, limit))


@operation("Scan analytics of all of a group's codes", "qr:read", returns="ScanAnalytics", query=ANALYTICS_QUERY)
async def group_scans(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    group_id = request.path_params["group_id"]
    scan_filter, group_by, limit = _filter(request, key, "group_id", group_id)
    db = request.app.state.db
    await fetch_group(db, key, group_id)  # 404 unless the caller's group
    return _answer(request, await scan_analytics(db, scan_filter, group_by, limit))


routes = [
    Route("/v1/qr-codes/{code_id}/scans", code_scans, methods=["GET"]),
    Route("/v1/qr-groups/{group_id}/scans", group_scans, methods=["GET"]),
]
