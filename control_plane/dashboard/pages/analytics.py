"""Scan analytics of a code or a group: the API's report, drawn as a chart, figures and breakdowns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from control_plane.dashboard.charts import timeseries_chart
from control_plane.dashboard.forms import field_errors
from control_plane.dashboard.visit import Visit, page
from control_plane.services import qr_codes, qr_groups, scan_reports
from control_plane.services.analytics import ScanAnalyticsPublic
from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.scan_reports import AnalyticsQuery
from shared.problems import Problem

RANGES = {"1": "Last 24 hours", "7": "Last 7 days", "30": "Last 30 days", "90": "Last 90 days", "365": "Last year"}
DIMENSIONS = {"country": "Country", "device": "Device", "os": "Operating system", "browser": "Browser",
              "scan_method": "Scan method", "scanner_app": "Scanner app", "outcome": "Outcome"}
Report = Callable[[ServiceContext, ApiKey, str, AnalyticsQuery], Awaitable[ScanAnalyticsPublic]]


def _query(visit: Visit) -> tuple[AnalyticsQuery, str, str]:
    days = visit.request.query_params.get("range", "30")
    days = days if days in RANGES else "30"
    group_by = "hour" if visit.request.query_params.get("group_by") == "hour" else "day"
    until = datetime.now(UTC).replace(microsecond=0)
    if group_by == "day":  # whole days, so that the first and last buckets are not partial
        until = until.replace(hour=0, minute=0, second=0) + timedelta(days=1)
    since = until - timedelta(days=int(days))
    query = AnalyticsQuery(since=since.isoformat(), until=until.isoformat(), group_by=group_by)  # type: ignore[arg-type]
    return query, days, group_by


async def _analytics(visit: Visit, subject: dict[str, Any], report: Report) -> Response:
    query, days, group_by = _query(visit)
    context: dict[str, Any] = {"subject": subject, "ranges": RANGES, "days": days, "group_by": group_by,
                               "dimensions": DIMENSIONS, "report": None, "error": ""}
    try:
        result = await report(visit.stores.services, visit.principal, subject["id"], query)
    except Problem as problem:
        context["error"] = "; ".join(field_errors(problem).values())
        return visit.render("analytics.html", context, problem.status)
    context["report"] = result
    context["chart"] = timeseries_chart(result["timeseries"], group_by)
    return visit.render("analytics.html", context)


@page()
async def code_analytics(visit: Visit) -> Response:
    code = await qr_codes.get_code(visit.stores.services, visit.principal, visit.request.path_params["code_id"])
    subject = {"id": code["id"], "name": code["name"] or code["slug"] or code["id"], "kind": "code",
               "href": f"/app/codes/{code['id']}"}
    return await _analytics(visit, subject, scan_reports.code_scans)


@page()
async def group_analytics(visit: Visit) -> Response:
    group = await qr_groups.get_group(visit.stores.services, visit.principal, visit.request.path_params["group_id"])
    subject = {"id": group["id"], "name": group["name"] or group["id"], "kind": "group",
               "href": f"/app/groups/{group['id']}"}
    return await _analytics(visit, subject, scan_reports.group_scans)


routes = [
    Route("/codes/{code_id}/analytics", code_analytics, methods=["GET"]),
    Route("/groups/{group_id}/analytics", group_analytics, methods=["GET"]),
]
