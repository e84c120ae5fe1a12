"""`/v1/domains`: HTTP in and out; the rules live in `control_plane.services.domains`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, parse_body, parse_query
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import domains
from control_plane.services.domains import DomainBody, DomainPublic
from control_plane.services.listing import PageQuery


@operation("Add a custom domain", "qr:write", body=DomainBody, status=201, returns=DomainPublic)
async def create_domain(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, DomainBody)
    return json_response(await domains.create_domain(app_state(request).services, key, body), 201)


@operation("List domains", "qr:read", returns=DomainPublic, many=True, query=PageQuery)
async def list_domains(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    page = parse_query(request, PageQuery)
    return list_response(await domains.list_domains(app_state(request).services, key, page))


@operation("Retrieve a domain", "qr:read", returns=DomainPublic)
async def get_domain(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return json_response(await domains.get_domain(app_state(request).services, key,
                                                  request.path_params["domain_id"]))


@operation("Delete a domain no live code uses", "qr:write", status=204)
async def delete_domain(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    await domains.delete_domain(app_state(request).services, key, request.path_params["domain_id"])
    return Response(status_code=204)


routes = [
    Route("/v1/domains", create_domain, methods=["POST"]),
    Route("/v1/domains", list_domains, methods=["GET"]),
    Route("/v1/domains/{domain_id}", get_domain, methods=["GET"]),
    Route("/v1/domains/{domain_id}", delete_domain, methods=["DELETE"]),
]
