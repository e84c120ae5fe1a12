"""`GET /v1/qr-codes/{id}/scans` and `GET /v1/qr-groups/{id}/scans` (docs/api.md §2.8)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import scan_reports
from control_plane.services.analytics import ScanAnalyticsPublic
from control_plane.services.scan_reports import AnalyticsQuery


def _answer(request: Request, analytics: ScanAnalyticsPublic) -> Response:
    """JSON, or the timeseries as CSV for `Accept: text/csv` (spreadsheets, BI tools; docs/exports.md)."""
    if "text/csv" not in request.headers.get("accept", ""):
        return json_response(analytics)
    lines = ["bucket,scans,uniques"] + [f"{p['bucket']},{p['scans']},{p['uniques']}" for p in analytics["timeseries"]]
    return Response("\r\n".join(lines) + "\r\n", media_type="text/csv; charset=utf-8")


@operation("Scan analytics of a code", "qr:read", returns=ScanAnalyticsPublic, query=AnalyticsQuery)
async def code_scans(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    query = parse_query(request, AnalyticsQuery)
    code_id = request.path_params["code_id"]
    return _answer(request, await scan_reports.code_scans(app_state(request).services, key, code_id, query))


@operation("Scan analytics of all of a group's codes", "qr:read", returns=ScanAnalyticsPublic, query=AnalyticsQuery)
async def group_scans(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    query = parse_query(request, AnalyticsQuery)
    group_id = request.path_params["group_id"]
    return _answer(request, await scan_reports.group_scans(app_state(request).services, key, group_id, query))


routes = [
    Route("/v1/qr-codes/{code_id}/scans", code_scans, methods=["GET"]),
    Route("/v1/qr-groups/{group_id}/scans", group_scans, methods=["GET"]),
]
