"""`/v1/webhook-endpoints`: HTTP in and out; the rules live in `control_plane.services.webhook_endpoints`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import SECRET_SHOWN_ONCE, json_response, list_response, parse_body, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import webhook_endpoints as endpoints
from control_plane.services.listing import PageQuery
from control_plane.services.webhook_endpoints import (
    DeliveryListQuery,
    WebhookDeliveryPublic,
    WebhookEndpointCreate,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
)


@operation("Create a webhook endpoint (the secret is shown once)", "webhooks:write",
           body=WebhookEndpointCreate, status=201, returns=WebhookEndpointPublic,
           notes="An organisation has at most `WEBHOOK_ENDPOINTS_PER_ORG` endpoints in live mode (default 16) and"
                 " `WEBHOOK_TEST_ENDPOINTS_PER_ORG` in test mode (default 3).",
           error_details=((409, "The organisation already has as many endpoints in this mode as allowed"
                                " (problem type `webhook-endpoint-limit`); delete one first"),))
async def create_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    body = await parse_body(request, WebhookEndpointCreate)
    return json_response(await endpoints.create_endpoint(app_state(request).services, key, body), 201,
                         SECRET_SHOWN_ONCE)


@operation("List webhook endpoints", "webhooks:read", returns=WebhookEndpointPublic, many=True, query=PageQuery)
async def list_endpoints(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    page = parse_query(request, PageQuery)
    return list_response(await endpoints.list_endpoints(app_state(request).services, key, page))


@operation("Retrieve a webhook endpoint", "webhooks:read", returns=WebhookEndpointPublic)
async def get_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    endpoint_id = request.path_params["endpoint_id"]
    return json_response(await endpoints.get_endpoint(app_state(request).services, key, endpoint_id))


@operation("Update a webhook endpoint", "webhooks:write", body=WebhookEndpointUpdate,
           returns=WebhookEndpointPublic)
async def update_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    body = await parse_body(request, WebhookEndpointUpdate)
    endpoint_id = request.path_params["endpoint_id"]
    return json_response(await endpoints.update_endpoint(app_state(request).services, key, endpoint_id, body))


@operation("Delete a webhook endpoint and its delivery log", "webhooks:write", status=204)
async def delete_endpoint(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    await endpoints.delete_endpoint(app_state(request).services, key, request.path_params["endpoint_id"])
    return Response(status_code=204)


@operation("Rotate the signing secret (the old one signs too for 24 h)", "webhooks:write",
           returns=WebhookEndpointPublic)
async def rotate_secret(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    endpoint_id = request.path_params["endpoint_id"]
    return json_response(await endpoints.rotate_secret(app_state(request).services, key, endpoint_id),
                         headers=SECRET_SHOWN_ONCE)


@operation("Queue a test event for this endpoint only", "webhooks:write", status=202,
           returns=WebhookDeliveryPublic)
async def send_test_event(request: Request) -> Response:
    key = await authenticate(request, "webhooks:write")
    endpoint_id = request.path_params["endpoint_id"]
    return json_response(await endpoints.send_test_event(app_state(request).services, key, endpoint_id), 202)


@operation("List deliveries and their attempts, newest first", "webhooks:read", returns=WebhookDeliveryPublic,
           many=True, query=DeliveryListQuery)
async def list_deliveries(request: Request) -> Response:
    key = await authenticate(request, "webhooks:read")
    query = parse_query(request, DeliveryListQuery)
    endpoint_id = request.path_params["endpoint_id"]
    return list_response(await endpoints.list_deliveries(app_state(request).services, key, endpoint_id, query))


routes = [
    Route("/v1/webhook-endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook-endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", get_endpoint, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", update_endpoint, methods=["PATCH"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/test", send_test_event, methods=["POST"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/rotate-secret", rotate_secret, methods=["POST"]),
]
