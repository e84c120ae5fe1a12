"""`/v1/events` (scope webhooks:read): the outbox, newest first, as webhook subscribers receive it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.auth import authenticate
from control_plane.events import EVENT_TYPES, event_object
from control_plane.http import json_response, list_response, not_found, page
from control_plane.openapi import PAGE, Query, operation
from control_plane.problems import field_error


@operation("List events, newest first", "webhooks:read", returns="Event", many=True,
           query=PAGE + (Query("type", {"enum": list(EVENT_TYPES)}),))
async def list_events(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    limit, offset = page(request)
    where, args = "org_id = $1 AND livemode = $2", [key.org_id, key.livemode]
    if (kind := request.query_params.get("type")) is not None:
        if kind not in EVENT_TYPES:
            raise field_error("type", f"must be one of {', '.join(EVENT_TYPES)}")
        where += " AND type = $3"
        args.append(kind)
    db = request.app.state.db
    total = await db.fetchval(f"SELECT count(*) FROM events WHERE {where}", *args)
    rows = await db.fetch(f"SELECT * FROM events WHERE {where} ORDER BY seq DESC LIMIT {limit} OFFSET {offset}", *args)
    return list_response([event_object(r) for r in rows], total, limit, offset)


@operation("Retrieve an event", "webhooks:read", returns="Event")
async def get_event(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    row = await request.app.state.db.fetchrow("SELECT * FROM events WHERE id = $1 AND org_id = $2 AND livemode = $3",
                                              request.path_params["event_id"], key.org_id, key.livemode)
    if row is None:
        raise not_found("event")
    return json_response(event_object(row))


routes = [
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/{event_id}", get_event, methods=["GET"]),
]
