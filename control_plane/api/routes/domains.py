"""`/v1/domains`: custom short-URL hosts. A hostname belongs to one organisation; one in use cannot go."""

from __future__ import annotations

import re
from typing import Annotated, Any

import asyncpg
from pydantic import StringConstraints, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import json_response, list_response, not_found, owned_page, parse_body
from control_plane.api.openapi import PAGE, operation
from control_plane.services.schemas import Body
from shared.ids import new_id
from shared.problems import Problem, field_error
from shared.times import timestamp

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})+(:\d{{1,5}})?")


class DomainBody(Body):
    hostname: Annotated[str, StringConstraints(min_length=3, max_length=253)]

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not HOSTNAME.fullmatch(value):
            raise ValueError("must be a host name such as go.example.com")
        return value


def domain_object(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "object": "domain", "livemode": row["livemode"], "hostname": row["hostname"],
            "created_at": timestamp(row["created_at"])}


@operation("Add a custom domain", "qr:write", body=DomainBody, status=201, returns="Domain")
async def create_domain(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, DomainBody)
    if body.hostname == request.app.state.settings.default_domain:
        raise field_error("hostname", "is the default domain, which every organisation already uses")
    try:
        row = await request.app.state.db.fetchrow(
            "INSERT INTO domains (id, org_id, livemode, hostname) VALUES ($1, $2, $3, $4) RETURNING *",
            new_id("dom"), key.org_id, key.livemode, body.hostname)
    except asyncpg.UniqueViolationError:
        raise Problem(409, f"{body.hostname} is already registered.", type="domain-taken") from None
    return json_response(domain_object(row), 201)


@operation("List domains", "qr:read", returns="Domain", many=True, query=PAGE)
async def list_domains(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    rows, total, limit, offset = await owned_page(request, "domains", (key.org_id, key.livemode))
    return list_response([domain_object(r) for r in rows], total, limit, offset)


@operation("Retrieve a domain", "qr:read", returns="Domain")
async def get_domain(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    row = await request.app.state.db.fetchrow("SELECT * FROM domains WHERE id = $1 AND org_id = $2 AND livemode = $3",
                                              request.path_params["domain_id"], key.org_id, key.livemode)
    if row is None:
        raise not_found("domain")
    return json_response(domain_object(row))


@operation("Delete a domain no live code uses", "qr:write", status=204)
async def delete_domain(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    async with request.app.state.db.acquire() as conn, conn.transaction():
        hostname = await conn.fetchval(
            "SELECT hostname FROM domains WHERE id = $1 AND org_id = $2 AND livemode = $3 FOR UPDATE",
            request.path_params["domain_id"], key.org_id, key.livemode)
        if hostname is None:
            raise not_found("domain")
        in_use = await conn.fetchval("SELECT count(*) FROM qr_codes WHERE domain = $1 AND deleted_at IS NULL",
                                     hostname)
        if in_use:
            raise Problem(409, f"{hostname} is used by {in_use} live codes; delete or keep them first.",
                          type="domain-in-use")
        await conn.execute("DELETE FROM domains WHERE hostname = $1", hostname)
    return Response(status_code=204)


routes = [
    Route("/v1/domains", create_domain, methods=["POST"]),
    Route("/v1/domains", list_domains, methods=["GET"]),
    Route("/v1/domains/{domain_id}", get_domain, methods=["GET"]),
    Route("/v1/domains/{domain_id}", delete_domain, methods=["DELETE"]),
]
