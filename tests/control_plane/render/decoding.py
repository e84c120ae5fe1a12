"""Read an image back as a phone would: any of our three formats → the decoded text."""

from __future__ import annotations

import io

import resvg_py
from PIL import Image

from control_plane.render.scannability import decodes_to


def to_image(data: bytes, format: str) -> Image.Image:
    if format == "svg":
        # An independent SVG renderer, so the SVG's geometry is checked on its own, not through our raster code.
        data = bytes(resvg_py.svg_to_bytes(svg_string=data.decode("utf-8"), skip_system_fonts=True))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == ("PNG" if format in ("png", "svg") else "WEBP")
        image.load()
        return image.copy()


def reads_as(data: bytes, format: str, payload: str, background: str = "#ffffff") -> bool:
    return decodes_to(to_image(data, format), payload, background)
