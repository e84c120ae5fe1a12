"""`/v1/events` (scope webhooks:read): the outbox, newest first, as webhook subscribers receive it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import events
from control_plane.services.events import EventListQuery, EventPublic


@operation("List events, newest first", "webhooks:read", returns=EventPublic, many=True, query=EventListQuery)
async def list_events(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    query = parse_query(request, EventListQuery)
    return list_response(await events.list_events(app_state(request).services, key, query))


@operation("Retrieve an event", "webhooks:read", returns=EventPublic)
async def get_event(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    return json_response(await events.get_event(app_state(request).services, key, request.path_params["event_id"]))


routes = [
    Route("/v1/events", list_events, methods=["GET"]),
    Route("/v1/events/{event_id}", get_event, methods=["GET"]),
]
