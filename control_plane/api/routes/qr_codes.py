"""`/v1/qr-codes`: HTTP in and out; the rules live in `control_plane.services.qr_codes`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import (
    if_match,
    json_response,
    list_response,
    parse_body,
    parse_query,
    versioned_response,
)
from control_plane.api.openapi import operation
from control_plane.api.state import app_state
from control_plane.services import qr_codes
from control_plane.services.qr_codes import BulkUpdatePublic, QRCodePublic
from control_plane.services.schemas import (
    IMMUTABLE_CODE_FIELDS,
    QRCodeBulkUpdate,
    QRCodeCreate,
    QRCodeListQuery,
    QRCodeUpdate,
)


@operation("Create a QR code", "qr:write", body=QRCodeCreate, status=201, returns=QRCodePublic, extra_errors=(402,))
async def create_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeCreate)
    return versioned_response(await qr_codes.create_code(app_state(request).services, key, body), 201)


@operation("Find the live code with this destination URL, or create it", "qr:write", body=QRCodeCreate,
           returns=QRCodePublic, also=(201,), extra_errors=(402,))
async def upsert_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeCreate)
    obj, created = await qr_codes.upsert_code(app_state(request).services, key, body)
    return versioned_response(obj, 201 if created else 200)


@operation("List QR codes", "qr:read", returns=QRCodePublic, many=True, query=QRCodeListQuery)
async def list_codes(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    query = parse_query(request, QRCodeListQuery)
    return list_response(await qr_codes.list_codes(app_state(request).services, key, query))


@operation("Retrieve a QR code", "qr:read", returns=QRCodePublic)
async def get_code(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    return versioned_response(await qr_codes.get_code(app_state(request).services, key,
                                                      request.path_params["code_id"]))


@operation("Update a QR code (JSON Merge Patch)", "qr:write", body=QRCodeUpdate, returns=QRCodePublic,
           conditional=True)
async def update_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeUpdate, immutable=IMMUTABLE_CODE_FIELDS)
    code_id = request.path_params["code_id"]
    return versioned_response(await qr_codes.update_code(app_state(request).services, key, code_id, body,
                                                         if_match=if_match(request)))


@operation("Delete a QR code (soft: the edge answers 410)", "qr:write", status=204, conditional=True)
async def delete_code(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    await qr_codes.delete_code(app_state(request).services, key, request.path_params["code_id"],
                               if_match=if_match(request))
    return Response(status_code=204)


@operation("Set tags, folder, status or group on up to 1,000 codes at once (all or nothing)", "qr:write",
           body=QRCodeBulkUpdate, returns=BulkUpdatePublic)
async def bulk_update(request: Request) -> Response:
    key = await authenticate(request, "qr:write")
    body = await parse_body(request, QRCodeBulkUpdate)
    return json_response(await qr_codes.bulk_update(app_state(request).services, key, body))


routes = [
    Route("/v1/qr-codes", create_code, methods=["POST"]),
    Route("/v1/qr-codes/upsert", upsert_code, methods=["POST"]),
    Route("/v1/qr-codes/bulk-update", bulk_update, methods=["POST"]),
    Route("/v1/qr-codes", list_codes, methods=["GET"]),
    Route("/v1/qr-codes/{code_id}", get_code, methods=["GET"]),
    Route("/v1/qr-codes/{code_id}", update_code, methods=["PATCH"]),
    Route("/v1/qr-codes/{code_id}", delete_code, methods=["DELETE"]),
]
