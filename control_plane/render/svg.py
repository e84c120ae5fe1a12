"""Geometry → SVG: one compact path per layer, in module units, scaled by the viewBox."""

from __future__ import annotations

import base64
from xml.sax.saxutils import quoteattr

from control_plane.render.geometry import (
    Circle,
    Fill,
    Geometry,
    Layer,
    LinearGradient,
    Rect,
    Shape,
    Solid,
)


def _n(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _rect(shape: Rect) -> str:
    x, y, w, h, r = shape.x, shape.y, shape.w, shape.h, shape.radius
    if r == 0 or not any(shape.corners):
        return f"M{_n(x)} {_n(y)}h{_n(w)}v{_n(h)}h{_n(-w)}z"
    tl, tr, br, bl = (r if rounded else 0.0 for rounded in shape.corners)
    parts = [f"M{_n(x + tl)} {_n(y)}h{_n(w - tl - tr)}"]
    if tr:
        parts.append(f"a{_n(tr)} {_n(tr)} 0 0 1 {_n(tr)} {_n(tr)}")
    parts.append(f"v{_n(h - tr - br)}")
    if br:
        parts.append(f"a{_n(br)} {_n(br)} 0 0 1 {_n(-br)} {_n(br)}")
    parts.append(f"h{_n(-(w - br - bl))}")
    if bl:
        parts.append(f"a{_n(bl)} {_n(bl)} 0 0 1 {_n(-bl)} {_n(-bl)}")
    parts.append(f"v{_n(-(h - bl - tl))}")
    if tl:
        parts.append(f"a{_n(tl)} {_n(tl)} 0 0 1 {_n(tl)} {_n(-tl)}")
    return "".join(parts) + "z"


def _circle(shape: Circle) -> str:
    r = shape.r
    return (f"M{_n(shape.cx - r)} {_n(shape.cy)}a{_n(r)} {_n(r)} 0 1 0 {_n(2 * r)} 0"
            f"a{_n(r)} {_n(r)} 0 1 0 {_n(-2 * r)} 0z")


def path_data(shapes: tuple[Shape, ...]) -> str:
    return "".join(_rect(s) if isinstance(s, Rect) else _circle(s) for s in shapes)


def _gradient(fill: Fill, gradient_id: str) -> str:
    if isinstance(fill, Solid):
        return ""
    stops = f'<stop offset="0" stop-color="{fill.start}"/><stop offset="1" stop-color="{fill.end}"/>'
    if isinstance(fill, LinearGradient):
        return (f'<linearGradient id="{gradient_id}" gradientUnits="userSpaceOnUse" x1="{_n(fill.x1)}" '
                f'y1="{_n(fill.y1)}" x2="{_n(fill.x2)}" y2="{_n(fill.y2)}">{stops}</linearGradient>')
    return (f'<radialGradient id="{gradient_id}" gradientUnits="userSpaceOnUse" cx="{_n(fill.cx)}" '
            f'cy="{_n(fill.cy)}" r="{_n(fill.r)}">{stops}</radialGradient>')


def _layer(layer: Layer, index: int) -> tuple[str, str]:
    if not layer.shapes:
        return "", ""
    if isinstance(layer.fill, Solid):
        paint, definition = layer.fill.color, ""
    else:
        paint, definition = f"url(#g{index})", _gradient(layer.fill, f"g{index}")
    data = path_data(layer.shapes) + path_data(layer.holes)
    return definition, f'<path fill="{paint}" fill-rule="evenodd" d="{data}"/>'


def render_svg(geometry: Geometry, size: int, logo_png: bytes | None = None) -> bytes:
    w = geometry.width
    definitions, paths = zip(*(_layer(layer, i) for i, layer in enumerate(geometry.layers)), strict=True)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {w} {w}" '
             f'shape-rendering="geometricPrecision">']
    if any(definitions):
        parts.append(f"<defs>{''.join(definitions)}</defs>")
    if geometry.background is not None:
        parts.append(f'<rect width="{w}" height="{w}" fill="{geometry.background}"/>')
    parts.extend(paths)
    if geometry.logo is not None and logo_png is not None:
        box = geometry.logo
        href = quoteattr("data:image/png;base64," + base64.b64encode(logo_png).decode("ascii"))
        parts.append(f'<image x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.side)}" height="{_n(box.side)}" '
                     f'href={href}/>')
    parts.append("</svg>")
    return "".join(parts).encode("utf-8")
