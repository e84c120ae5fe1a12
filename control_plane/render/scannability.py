"""The scannability guarantee: refuse a design unless its image decodes back to exactly its payload."""

from __future__ import annotations

import zxingcpp
from PIL import Image, ImageOps

from control_plane.render.design import MAX_SIZE, Design
from control_plane.render.matrix import PayloadTooLarge, qr_matrix
from control_plane.render.output import render_raster
from shared.problems import Problem

# WCAG 2 contrast ratio between the dark and the light colour. 3:1 is WCAG's floor for graphics;
# cheaper phone cameras in dim light start to miss codes below it, even when our decoder still reads them.
MIN_CONTRAST = 3.0
# Decoding at 2048 px costs several times more than at 1024 and proves nothing more: a design that reads
# at 1024 px has at least as many pixels per module at any larger size.
MAX_CHECK_SIZE = 1024
# Our decoder reads a pristine 1.4 px module; a camera filming a screen does not. Two pixels is the floor.
MIN_MODULE_PIXELS = 2
# The image is checked as printed on an unknown surface: a dark surround, as on a dark table or poster.
# A code without its quiet zone (margin) then loses its finder patterns, as it would in print.
SURROUND = 24
SURROUND_COLOR = (40, 40, 40)


QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


class UnscannableDesign(Problem):
    def __init__(self, reason: str, field: str = "design") -> None:
        super().__init__(422, reason, type="unscannable-design", title="The design would not scan",
                         errors=[{"field": field, "message": reason}])


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(color[i:i + 2]) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _dark_colors(design: Design) -> list[tuple[str, str]]:
    colors = [("design.gradient.start", design.gradient.start), ("design.gradient.end", design.gradient.end)] \
        if design.gradient else [("design.colors.foreground", design.colors.foreground)]
    if design.eye_colors:
        colors += [("design.eye_colors.frame", design.eye_colors.frame),
                   ("design.eye_colors.ball", design.eye_colors.ball)]
    return colors


def check_contrast(design: Design) -> None:
    """Cheap checks first, before anything is drawn."""
    background = design.colors.background
    for field, color in _dark_colors(design):
        if _luminance(color) >= _luminance(background):
            raise UnscannableDesign(f"{color} is not darker than the background {background}: many scanners "
                                    "only read dark modules on a light background.", field)
        ratio = contrast_ratio(color, background)
        if ratio < MIN_CONTRAST:
            raise UnscannableDesign(f"The contrast between {color} and the background {background} is "
                                    f"{ratio:.2f}:1; at least {MIN_CONTRAST:g}:1 is needed to scan reliably.",
                                    field)


def as_scanned(image: Image.Image, background: str) -> Image.Image:
    """What a camera sees: transparent parts on the background colour, a dark surround, in grey."""
    if image.mode == "RGBA":
        paper = Image.new("RGBA", image.size, background)
        image = Image.alpha_composite(paper, image).convert("RGB")
    return ImageOps.expand(image.convert("RGB"), SURROUND, SURROUND_COLOR).convert("L")


def decodes_to(image: Image.Image, payload: str, background: str = "#ffffff") -> bool:
    # Inverted reading is off: a light-on-dark code must not pass on a decoder trick most phones lack.
    results = zxingcpp.read_barcodes(as_scanned(image, background), formats=QR_ONLY, try_invert=False)
    return any(result.text == payload for result in results)


def _reason(design: Design) -> str:
    if design.logo is not None:
        return (f"The logo at scale {design.logo.scale:g} hides more modules than error correction "
                f"{design.effective_error_correction} can restore; make it smaller or raise the level.")
    if design.margin < 4:
        return (f"Without a wide enough quiet zone (margin {design.margin}) the code does not read against a "
                "dark surround; use a margin of 4 modules, or at least 2.")
    return "The rendered image does not decode back to its payload; choose plainer shapes or stronger colours."


def _modules(payload: str, design: Design) -> int:
    """Modules across the image, quiet zone included."""
    return qr_matrix(payload, design.effective_error_correction).width + 2 * design.margin


def check_module_pixels(payload: str, design: Design, size: int, field: str) -> None:
    """A 422 on `field` unless every module is MIN_MODULE_PIXELS wide in an image `size` px a side."""
    modules = _modules(payload, design)
    smallest = MIN_MODULE_PIXELS * modules
    if size < smallest:
        raise UnscannableDesign(f"At {size} px each module would be {size / modules:.1f} px wide; at least "
                                f"{MIN_MODULE_PIXELS} px are needed, so this code needs {smallest} px or more. "
                                "Make the image larger or the content shorter.", field)


def check_scannable(payload: str, design: Design, logo_png: bytes | None = None) -> None:
    """Raise UnscannableDesign with a human reason unless the design reads back as exactly `payload`."""
    check_contrast(design)
    try:
        qr_matrix(payload, design.effective_error_correction)
    except PayloadTooLarge as exc:
        raise UnscannableDesign(f"The content is too long: {exc}.", "design.error_correction") from None
    check_module_pixels(payload, design, design.size, "design.size")
    image = render_raster(payload, design, checked_size(design), logo_png)
    if not decodes_to(image, payload, design.colors.background):
        raise UnscannableDesign(_reason(design))


def checked_size(design: Design) -> int:
    """The size check_scannable decodes a design at: the one size a design is proven to read at."""
    return min(design.size, MAX_CHECK_SIZE)


def readable_size(payload: str, design: Design, size: int, image: Image.Image,
                  logo_png: bytes | None = None) -> int:
    """`size` if `image` (the design rendered at `size`) decodes; else a size that does. Reading at 504 px says
    nothing about 512: shapes land differently on the pixel grid (docs/rendering.md). At most one more render:
    the next size up with whole pixels per module, else the size the design was proven at."""
    if decodes_to(image, payload, design.colors.background):
        return size
    modules = _modules(payload, design)
    crisp = modules * -(-size // modules)
    if crisp != size and crisp <= MAX_SIZE and \
            decodes_to(render_raster(payload, design, crisp, logo_png), payload, design.colors.background):
        return crisp
    return checked_size(design)


def check_readable(size: int, readable: int) -> None:
    """A 422 on `size` naming `readable` unless the two agree."""
    if readable != size:
        raise UnscannableDesign(f"At {size} px this code's image does not decode: its shapes fall badly on the pixel "
                                f"grid at that size. At {readable} px it reads; download at that size.", "size")
