"""Image routes: authenticated downloads, and public content-addressed images and preview pages."""

from __future__ import annotations

import html
import re

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from control_plane.api.auth import authenticate
from control_plane.api.http import query_int
from control_plane.api.openapi import Query, operation
from control_plane.api.state import app_state
from control_plane.render.design import MAX_SIZE, MIN_SIZE, UPLOADED_LOGO
from control_plane.render.images import (
    RenderCache,
    download_size_check,
    effective_design,
    load_spec,
    mint,
    payload_for,
    proven_at,
)
from control_plane.render.logo import load_logo
from control_plane.render.output import MEDIA_TYPES
from control_plane.services.qr_codes import fetch_code
from shared.problems import Problem, field_error

_HASH = re.compile(r"[0-9a-f]{32}")
IMMUTABLE = "public, max-age=31536000, immutable"
# Our SVG holds only paths and a data: PNG; this keeps a browser from running anything else in it.
SVG_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _cache(request: Request) -> RenderCache:
    state = app_state(request)
    return RenderCache(state.db, state.redis, state.keys)


def _image_response(request: Request, body: bytes, format: str, etag: str, cache_control: str,
                    filename: str | None = None) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if format == "svg":
        headers["Content-Security-Policy"] = SVG_POLICY
    if filename:
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, 200, headers, MEDIA_TYPES[format])


@operation("Download the code's image", "qr:read", media=tuple(MEDIA_TYPES.values()), query=(
    Query("format", {"enum": list(MEDIA_TYPES)}, "default: the design's format"),
    Query("size", {"type": "integer", "minimum": MIN_SIZE, "maximum": MAX_SIZE},
          "pixels; default: the design's size; a dense code needs more (2 px per module, docs/rendering.md)"),
), error_details=((422, "Validation failed, or `size` is under the smallest at which the code scans (2 px per"
                        " module, quiet zone included), or the image at that size does not decode"
                        " (`unscannable-design`, naming a size that does)"),))
async def download(request: Request) -> Response:
    key = await authenticate(request, "qr:read")
    state = app_state(request)
    db, settings = state.db, state.settings
    row = await fetch_code(db, key, request.path_params["code_id"])
    payload, design = payload_for(row, settings), effective_design(row["design"])
    format = request.query_params.get("format", design["format"])
    if format not in MEDIA_TYPES:
        raise field_error("format", f"must be one of {', '.join(MEDIA_TYPES)}")
    size = query_int(request, "size", design["size"], MIN_SIZE, MAX_SIZE)
    download_size_check(payload, design, size)
    image = await mint(db, settings, payload, design)
    body = await _cache(request).render(image, payload, design, format, size, verify=not proven_at(design, size))
    return _image_response(request, body, format, f'"{image}-{size}-{format}"', "private, no-cache",
                           f"{row['id']}.{format}")


async def public_image(request: Request) -> Response:
    name = request.path_params["name"]
    image, _, format = name.partition(".")
    spec = await load_spec(app_state(request).db, image) if _HASH.fullmatch(image) and format in MEDIA_TYPES \
        else None
    if spec is None:
        raise Problem(404, "No such image.")
    payload, design = spec
    body = await _cache(request).render(image, payload, design, format, design["size"])
    return _image_response(request, body, format, f'"{image}-{format}"', IMMUTABLE)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>QR code preview</title>
<style>body{{font-family:system-ui,sans-serif;display:flex;flex-direction:column;align-items:center;
margin:2rem;color:#222}}img{{width:min(80vw,{size}px);height:auto;border:1px solid #ddd}}
nav a{{margin:0 .5rem}}</style></head>
<body><h1>QR code preview</h1><img src="/i/{image}.svg" alt="QR code" width="{size}" height="{size}">
<nav><a href="/i/{image}.png" download>PNG</a><a href="/i/{image}.svg" download>SVG</a>
<a href="/i/{image}.webp" download>WebP</a></nav></body></html>
"""


async def preview(request: Request) -> Response:
    image = request.path_params["image"]
    spec = await load_spec(app_state(request).db, image) if _HASH.fullmatch(image) else None
    if spec is None:
        raise Problem(404, "No such preview.")
    page = _PAGE.format(image=html.escape(image), size=int(spec[1]["size"]))
    return HTMLResponse(page, headers={"Cache-Control": IMMUTABLE, "Content-Security-Policy":
                                       "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"})


async def logo(request: Request) -> Response:
    match = UPLOADED_LOGO.fullmatch(request.url.path)
    png = await load_logo(app_state(request).db, match.group(1)) if match else None
    if match is None or png is None:
        raise Problem(404, "No such logo.")
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{match.group(1)}"', "X-Content-Type-Options": "nosniff"}
    return Response(png, 200, headers, "image/png")


routes = [
    Route("/v1/qr-codes/{code_id}/download", download, methods=["GET"]),
    Route("/i/{name}", public_image, methods=["GET"]),
    Route("/qr/{image}", preview, methods=["GET"]),
    Route("/logos/{name}", logo, methods=["GET"]),
]
