"""A PDF written front to back: objects go out as they are made and only their offsets stay in memory.

Label-sheet exports run to hundreds of pages; PDF libraries keep every page until they save, so memory
would grow with the number of codes. This writer keeps one page at a time (plus 10 bytes per object for
the cross-reference table). Codes are vector paths drawn from `geometry.Geometry`; labels use Bitstream
Vera Sans, shipped with reportlab, embedded whole (WinAnsi encoding, metrics read with reportlab).
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

import reportlab
from PIL import Image
from reportlab.pdfbase.ttfonts import TTFontFile

from control_plane.render.geometry import Circle, Fill, Geometry, LinearGradient, RadialGradient, Rect, Shape, Solid

MM = 72 / 25.4  # PDF points per millimetre
KAPPA = 0.5522847498  # Bézier control distance of a quarter circle, per unit radius
FONT_FILE = os.path.join(os.path.dirname(reportlab.__file__), "fonts", "Vera.ttf")
FONT_NAME = "BitstreamVeraSans-Roman"
FIRST_CHAR, LAST_CHAR = 32, 255


def _n(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _rgb(color: str) -> str:
    return " ".join(_n(int(color[i:i + 2], 16) / 255) for i in (1, 3, 5))


@dataclass(frozen=True, slots=True)
class FontMetrics:
    widths: tuple[float, ...]  # per WinAnsi code FIRST_CHAR..LAST_CHAR, in 1/1000 em
    ascent: float
    descent: float
    cap_height: float
    bbox: tuple[float, ...]
    stem_v: float


@lru_cache(maxsize=1)
def font_metrics() -> FontMetrics:
    ttf = TTFontFile(FONT_FILE)
    widths = []
    for code in range(FIRST_CHAR, LAST_CHAR + 1):
        char = bytes([code]).decode("cp1252", errors="replace")
        widths.append(ttf.charWidths.get(ord(char), ttf.defaultWidth))
    return FontMetrics(tuple(widths), ttf.ascent, ttf.descent, ttf.capHeight, tuple(ttf.bbox), ttf.stemV)


def encode_text(text: str) -> bytes:
    """WinAnsi bytes of `text`; characters the encoding lacks print as '?'. Control characters are dropped."""
    text = "".join(ch for ch in text if ch >= " ")
    return text.encode("cp1252", errors="replace")


def text_width(data: bytes, size: float) -> float:
    widths = font_metrics().widths
    return sum(widths[b - FIRST_CHAR] for b in data if b >= FIRST_CHAR) * size / 1000


def fit_text(text: str, size: float, width: float) -> bytes:
    """The label as it fits in `width` points, shortened with an ellipsis when it does not."""
    data = encode_text(text)
    if text_width(data, size) <= width:
        return data
    ellipsis = b"\x85"
    while data and text_width(data + ellipsis, size) > width:
        data = data[:-1]
    return data + ellipsis


def _literal(data: bytes) -> bytes:
    return b"(" + data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _rect_path(s: Rect) -> str:
    x, y, w, h = s.x, s.y, s.w, s.h
    if s.radius == 0 or not any(s.corners):
        return f"{_n(x)} {_n(y)} {_n(w)} {_n(h)} re "
    tl, tr, br, bl = (s.radius if rounded else 0.0 for rounded in s.corners)
    k = KAPPA
    return (f"{_n(x + tl)} {_n(y)} m {_n(x + w - tr)} {_n(y)} l "
            f"{_n(x + w - tr + k * tr)} {_n(y)} {_n(x + w)} {_n(y + tr - k * tr)} {_n(x + w)} {_n(y + tr)} c "
            f"{_n(x + w)} {_n(y + h - br)} l "
            f"{_n(x + w)} {_n(y + h - br + k * br)} {_n(x + w - br + k * br)} {_n(y + h)} "
            f"{_n(x + w - br)} {_n(y + h)} c "
            f"{_n(x + bl)} {_n(y + h)} l "
            f"{_n(x + bl - k * bl)} {_n(y + h)} {_n(x)} {_n(y + h - bl + k * bl)} {_n(x)} {_n(y + h - bl)} c "
            f"{_n(x)} {_n(y + tl)} l "
            f"{_n(x)} {_n(y + tl - k * tl)} {_n(x + tl - k * tl)} {_n(y)} {_n(x + tl)} {_n(y)} c h ")


def _circle_path(s: Circle) -> str:
    cx, cy, r = s.cx, s.cy, s.r
    k = KAPPA * r
    return (f"{_n(cx + r)} {_n(cy)} m "
            f"{_n(cx + r)} {_n(cy + k)} {_n(cx + k)} {_n(cy + r)} {_n(cx)} {_n(cy + r)} c "
            f"{_n(cx - k)} {_n(cy + r)} {_n(cx - r)} {_n(cy + k)} {_n(cx - r)} {_n(cy)} c "
            f"{_n(cx - r)} {_n(cy - k)} {_n(cx - k)} {_n(cy - r)} {_n(cx)} {_n(cy - r)} c "
            f"{_n(cx + k)} {_n(cy - r)} {_n(cx + r)} {_n(cy - k)} {_n(cx + r)} {_n(cy)} c h ")


def path_ops(shapes: tuple[Shape, ...]) -> str:
    return "".join(_rect_path(s) if isinstance(s, Rect) else _circle_path(s) for s in shapes)


def _shading(fill: LinearGradient | RadialGradient) -> bytes:
    function = f"<< /FunctionType 2 /Domain [0 1] /C0 [{_rgb(fill.start)}] /C1 [{_rgb(fill.end)}] /N 1 >>"
    if isinstance(fill, LinearGradient):
        coords = f"/ShadingType 2 /Coords [{_n(fill.x1)} {_n(fill.y1)} {_n(fill.x2)} {_n(fill.y2)}]"
    else:
        coords = f"/ShadingType 3 /Coords [{_n(fill.cx)} {_n(fill.cy)} 0 {_n(fill.cx)} {_n(fill.cy)} {_n(fill.r)}]"
    return f"<< {coords} /ColorSpace /DeviceRGB /Function {function} /Extend [true true] >>".encode()


class PdfWriter:
    """Pages appended one at a time to `out` (any object with `write`)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.position = 0
        self.offsets: dict[int, int] = {}
        self.next_number = 3  # 1: catalog, 2: page tree (written last)
        self.pages: list[int] = []
        self.font: int | None = None
        self.logos: dict[str, tuple[int, int, int]] = {}  # sha256 → (object, width px, height px)
        self._write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")

    def _write(self, data: bytes) -> None:
        self.out.write(data)
        self.position += len(data)

    def _reserve(self) -> int:
        number = self.next_number
        self.next_number += 1
        return number

    def _object(self, number: int, body: bytes) -> None:
        self.offsets[number] = self.position
        self._write(b"%d 0 obj\n" % number + body + b"\nendobj\n")

    def _stream(self, number: int, entries: str, data: bytes, *, compress: bool = True) -> None:
        if compress:
            data = zlib.compress(data, 6)
            entries += " /Filter /FlateDecode"
        self._object(number, f"<< {entries} /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream")

    def font_object(self) -> int:
        """The label font, embedded once on first use."""
        if self.font is None:
            metrics = font_metrics()
            with open(FONT_FILE, "rb") as handle:
                program = handle.read()
            file_number, descriptor, self.font = self._reserve(), self._reserve(), self._reserve()
            self._stream(file_number, f"/Length1 {len(program)}", program)
            bbox = " ".join(_n(v) for v in metrics.bbox)
            self._object(descriptor, (
                f"<< /Type /FontDescriptor /FontName /{FONT_NAME} /Flags 32 /FontBBox [{bbox}]"
                f" /ItalicAngle 0 /Ascent {_n(metrics.ascent)} /Descent {_n(metrics.descent)}"
                f" /CapHeight {_n(metrics.cap_height)} /StemV {_n(metrics.stem_v)} /FontFile2 {file_number} 0 R >>"
            ).encode())
            widths = " ".join(_n(w) for w in metrics.widths)
            self._object(self.font, (
                f"<< /Type /Font /Subtype /TrueType /BaseFont /{FONT_NAME} /FirstChar {FIRST_CHAR}"
                f" /LastChar {LAST_CHAR} /Widths [{widths}] /Encoding /WinAnsiEncoding"
                f" /FontDescriptor {descriptor} 0 R >>").encode())
        return self.font

    def logo_object(self, sha256: str, png: bytes) -> tuple[int, int, int]:
        """A logo as an image XObject (with its alpha as a soft mask), written once per distinct logo."""
        if sha256 not in self.logos:
            with Image.open(io.BytesIO(png)) as source:
                rgba = source.convert("RGBA")
            image, mask = self._reserve(), self._reserve()
            common = f"/Type /XObject /Subtype /Image /Width {rgba.width} /Height {rgba.height} /BitsPerComponent 8"
            self._stream(mask, f"{common} /ColorSpace /DeviceGray", rgba.getchannel("A").tobytes())
            self._stream(image, f"{common} /ColorSpace /DeviceRGB /SMask {mask} 0 R", rgba.convert("RGB").tobytes())
            self.logos[sha256] = (image, rgba.width, rgba.height)
        return self.logos[sha256]

    def add_page(self, width: float, height: float, page: PageContent) -> None:
        resources = []
        if page.uses_font:
            resources.append(f"/Font << /F1 {self.font_object()} 0 R >>")
        shadings = []
        for index, shading in enumerate(page.shadings):
            number = self._reserve()
            self._object(number, shading)
            shadings.append(f"/Sh{index} {number} 0 R")
        if shadings:
            resources.append(f"/Shading << {' '.join(shadings)} >>")
        if page.images:
            resources.append("/XObject << " + " ".join(f"/{name} {obj} 0 R" for name, obj in page.images.items())
                             + " >>")
        content = self._reserve()
        self._stream(content, "", page.ops.getvalue())
        number = self._reserve()
        self._object(number, (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_n(width)} {_n(height)}]"
                              f" /Resources << {' '.join(resources)} >> /Contents {content} 0 R >>").encode())
        self.pages.append(number)

    def close(self) -> None:
        kids = " ".join(f"{n} 0 R" for n in self.pages)
        self._object(2, f"<< /Type /Pages /Kids [{kids}] /Count {len(self.pages)} >>".encode())
        self._object(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        xref = self.position
        lines = [b"xref\n0 %d\n" % self.next_number, b"0000000000 65535 f \n"]
        lines += [b"%010d 00000 n \n" % self.offsets[n] for n in range(1, self.next_number)]
        self._write(b"".join(lines))
        self._write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (self.next_number, xref))


class PageContent:
    """The drawing operators of one page, and what they refer to."""

    def __init__(self) -> None:
        self.ops = io.BytesIO()
        self.shadings: list[bytes] = []
        self.images: dict[str, int] = {}
        self.uses_font = False

    def _fill(self, fill: Fill, path: str) -> None:
        if isinstance(fill, Solid):
            self.ops.write(f"{_rgb(fill.color)} rg {path}f*\n".encode())
            return
        name = f"Sh{len(self.shadings)}"
        self.shadings.append(_shading(fill))
        self.ops.write(f"q {path}W* n /{name} sh Q\n".encode())

    def code(self, geometry: Geometry, x: float, y: float, size: float) -> None:
        """Draw a code with its bottom-left corner at (x, y) points, `size` points a side."""
        unit = size / geometry.width
        # Module coordinates run downwards from the top-left corner, as in the geometry.
        self.ops.write(f"q {_n(unit)} 0 0 {_n(-unit)} {_n(x)} {_n(y + size)} cm\n".encode())
        if geometry.background is not None:
            self.ops.write(f"{_rgb(geometry.background)} rg 0 0 {geometry.width} {geometry.width} re f\n".encode())
        for layer in geometry.layers:
            if layer.shapes:
                self._fill(layer.fill, path_ops(layer.shapes) + path_ops(layer.holes))
        self.ops.write(b"Q\n")

    def logo(self, name: str, obj: int, pixels: tuple[int, int], geometry: Geometry, x: float, y: float,
             size: float) -> None:
        """The logo fitted, centred, into its box (as the SVG's default preserveAspectRatio places it)."""
        assert geometry.logo is not None
        unit = size / geometry.width
        box = geometry.logo
        side = box.side * unit
        scale = side / max(pixels)
        w, h = pixels[0] * scale, pixels[1] * scale
        left = x + box.x * unit + (side - w) / 2
        bottom = y + size - (box.y * unit) - side + (side - h) / 2
        self.images[name] = obj
        self.ops.write(f"q {_n(w)} 0 0 {_n(h)} {_n(left)} {_n(bottom)} cm /{name} Do Q\n".encode())

    def text(self, data: bytes, center_x: float, baseline: float, size: float) -> None:
        self.uses_font = True
        left = center_x - text_width(data, size) / 2
        self.ops.write(f"0 0 0 rg BT /F1 {_n(size)} Tf {_n(left)} {_n(baseline)} Td ".encode() + _literal(data)
                       + b" Tj ET\n")

    def line(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self.ops.write(f"0 0 0 RG 0.25 w {_n(x1)} {_n(y1)} m {_n(x2)} {_n(y2)} l S\n".encode())
