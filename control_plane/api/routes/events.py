"""`/v1/events` (scope webhooks:read): the outbox, newest first, as webhook subscribers receive it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, not_found, owned_page
from control_plane.api.openapi import PAGE, Query, operation
from shared.outbox import EVENT_TYPES, event_object
from shared.problems import field_error


@operation("List events, newest first", "webhooks:read", returns="Event", many=True,
           query=PAGE + (Query("type", {"enum": list(EVENT_TYPES)}),))
async def list_events(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    where, args = "", tuple[Any, ...]()
    if (kind := request.query_params.get("type")) is not None:
        if kind not in EVENT_TYPES:
            raise field_error("type", f"must be one of {', '.join(EVENT_TYPES)}")
        where, args = "type = $3", (kind,)
    rows, total, limit, offset = await owned_page(request, "events", (key.org_id, key.livemode), where=where,
                                                  args=args, order="seq DESC")
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
