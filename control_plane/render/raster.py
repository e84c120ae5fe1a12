"""Geometry → PNG / WebP with Pillow, drawing the same shapes as the SVG (supersampled for smooth edges)."""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageChops, ImageDraw

from control_plane.render.geometry import Circle, Fill, Geometry, Layer, LinearGradient, RadialGradient, Shape, Solid

SUPERSAMPLE = 2  # draw at twice the size, then average down: anti-aliased dots and curves
# Larger images draw curves directly: a module is then ≥ 23 px and a stair step under 5 % of it, while a
# supersampled mask of an 8000 px image would be 256 MB, more than the canvas itself.
SUPERSAMPLED_UP_TO = 4096
GRADIENT_BAND = 256  # rows of a gradient scaled up and painted at a time


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _draw(draw: ImageDraw.ImageDraw, shape: Shape, unit: float, value: int) -> None:
    if isinstance(shape, Circle):
        box = ((shape.cx - shape.r) * unit, (shape.cy - shape.r) * unit,
               (shape.cx + shape.r) * unit - 1, (shape.cy + shape.r) * unit - 1)
        draw.ellipse(box, fill=value)
        return
    x0, y0 = round(shape.x * unit), round(shape.y * unit)
    x1, y1 = round((shape.x + shape.w) * unit) - 1, round((shape.y + shape.h) * unit) - 1
    draw.rectangle((x0, y0, x1, y1), fill=value)
    if not shape.radius:
        return
    # Pillow's rounded_rectangle fails on some corner subsets, so each rounded corner is cut away and
    # refilled with its circle. Shapes never overlap, so the cut touches this shape alone.
    d = min(round(2 * shape.radius * unit), x1 - x0 + 1, y1 - y0 + 1)
    boxes = ((x0, y0), (x1 - d + 1, y0), (x1 - d + 1, y1 - d + 1), (x0, y1 - d + 1))
    for (bx, by), rounded, (cx, cy) in zip(boxes, shape.corners, ((0, 0), (1, 0), (1, 1), (0, 1)), strict=True):
        if rounded:
            half = d // 2
            draw.rectangle((bx + cx * half, by + cy * half, bx + cx * half + d - half - 1,
                            by + cy * half + d - half - 1), fill=255 - value)
            draw.ellipse((bx, by, bx + d - 1, by + d - 1), fill=value)


Steps = list[tuple[tuple[Shape, ...], tuple[Shape, ...]]]  # (shapes, holes) drawn in order into one mask


def _by_fill(layers: tuple[Layer, ...]) -> list[tuple[Fill, Steps]]:
    """Consecutive layers that share a fill become one mask: a third of the drawing for a one-colour code.
    Holes only ever cut eye frames, whose inside holds just the eye ball, drawn after them."""
    merged: list[tuple[Fill, Steps]] = []
    for layer in layers:
        if not layer.shapes:
            continue
        if merged and merged[-1][0] == layer.fill:
            merged[-1][1].append((layer.shapes, layer.holes))
        else:
            merged.append((layer.fill, [(layer.shapes, layer.holes)]))
    return merged


def _curved(shapes: tuple[Shape, ...]) -> bool:
    return any(isinstance(shape, Circle) or shape.radius for shape in shapes)


def _mask(steps: Steps, size: int, unit: float) -> Image.Image:
    # Straight edges need no smoothing; only curves are drawn large and averaged down.
    curved = any(_curved(shapes) or _curved(holes) for shapes, holes in steps)
    factor = SUPERSAMPLE if curved and size <= SUPERSAMPLED_UP_TO else 1
    mask = Image.new("L", (size * factor, size * factor), 0)
    draw = ImageDraw.Draw(mask)
    for shapes, holes in steps:
        for shape in shapes:
            _draw(draw, shape, unit * factor, 255)
        for hole in holes:
            _draw(draw, hole, unit * factor, 0)
    return mask.reduce(factor) if factor > 1 else mask


@lru_cache(maxsize=4)
def _ramp(direction: str) -> Image.Image:
    """0 → 255 from the gradient's start to its end across RAMP_SIDE px, as SVG's userSpaceOnUse gradients run
    (cached: read-only, 64 KB each)."""
    if direction == "radial":
        # Pillow's radial ramp reaches 255 at the corners of its square, which is where ours ends too.
        return Image.radial_gradient("L")
    vertical = Image.linear_gradient("L")
    horizontal = vertical.transpose(Image.Transpose.ROTATE_90)
    return {"vertical": vertical, "horizontal": horizontal,
            "diagonal": ImageChops.add(horizontal, vertical, scale=2.0)}[direction]


def _direction(fill: LinearGradient | RadialGradient) -> str:
    if isinstance(fill, RadialGradient):
        return "radial"
    return "vertical" if fill.x2 == 0 else "horizontal" if fill.y2 == 0 else "diagonal"


def _paint(canvas: Image.Image, fill: Fill, mask: Image.Image) -> None:
    size = canvas.size[0]
    if isinstance(fill, Solid):
        canvas.paste(_rgb(fill.color), (0, 0, size, size), mask)
        return
    ramp = _ramp(_direction(fill))
    colors = Image.composite(Image.new("RGB", ramp.size, _rgb(fill.end)),
                             Image.new("RGB", ramp.size, _rgb(fill.start)), ramp)
    # Scaled up a band at a time: a gradient costs two bands, not two more canvases (docs/rendering.md).
    scale = ramp.size[1] / size
    for top in range(0, size, GRADIENT_BAND):
        bottom = min(top + GRADIENT_BAND, size)
        band = colors.resize((size, bottom - top), Image.Resampling.BILINEAR,
                             box=(0, top * scale, ramp.size[0], bottom * scale))
        canvas.paste(band, (0, top), mask.crop((0, top, size, bottom)))


def _paste_logo(canvas: Image.Image, geometry: Geometry, logo_png: bytes, unit: float) -> None:
    assert geometry.logo is not None
    box = geometry.logo
    side = round(box.side * unit)
    with Image.open(io.BytesIO(logo_png)) as source:
        logo = source.convert("RGBA")
    # Fit inside the square, centred: what SVG's default preserveAspectRatio does with the same <image>.
    scale = side / max(logo.size)
    logo = logo.resize((max(1, round(logo.width * scale)), max(1, round(logo.height * scale))),
                       Image.Resampling.LANCZOS)
    x = round(box.x * unit) + (side - logo.width) // 2
    y = round(box.y * unit) + (side - logo.height) // 2
    if canvas.mode == "RGBA":
        canvas.alpha_composite(logo, (x, y))
    else:
        canvas.paste(logo, (x, y), logo)


def render_image(geometry: Geometry, size: int, logo_png: bytes | None = None) -> Image.Image:
    unit = size / geometry.width
    if geometry.background is None:
        canvas = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    else:
        canvas = Image.new("RGB", (size, size), _rgb(geometry.background))
    for fill, steps in _by_fill(geometry.layers):
        _paint(canvas, fill, _mask(steps, size, unit))
    if geometry.logo is not None and logo_png is not None:
        _paste_logo(canvas, geometry, logo_png, unit)
    return canvas


def encode(image: Image.Image, format: str) -> bytes:
    out = io.BytesIO()
    if format == "webp":
        # Lossless: exact colours and edges, like the PNG; method 0 is the fast encoder.
        image.save(out, "WEBP", lossless=True, method=0)
    else:
        image.save(out, "PNG", compress_level=1)
    return out.getvalue()
