"""One entry point: payload + design → image bytes in any of the three formats."""

from __future__ import annotations

from PIL import Image

from control_plane.render.design import Design
from control_plane.render.geometry import Geometry, build_geometry
from control_plane.render.matrix import qr_matrix
from control_plane.render.raster import encode, render_image
from control_plane.render.svg import render_svg

MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml", "webp": "image/webp"}


def geometry_for(payload: str, design: Design) -> Geometry:
    return build_geometry(qr_matrix(payload, design.effective_error_correction), design)


def render_raster(payload: str, design: Design, size: int, logo_png: bytes | None = None) -> Image.Image:
    return render_image(geometry_for(payload, design), size, logo_png)


def render_bytes(payload: str, design: Design, format: str, size: int, logo_png: bytes | None = None) -> bytes:
    geometry = geometry_for(payload, design)
    if format == "svg":
        return render_svg(geometry, size, logo_png)
    return encode(render_image(geometry, size, logo_png), format)
