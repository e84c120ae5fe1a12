"""The guarantee, across the board: every static type × many designs × every format reads back exactly."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import ImageChops

from control_plane.render.content import encode_static
from control_plane.render.design import PRESETS, parse_design
from control_plane.render.output import render_bytes
from control_plane.render.scannability import check_scannable
from tests.control_plane.render.decoding import reads_as, to_image
from tests.control_plane.render.logos import logo_png

CONTENTS: dict[str, dict[str, Any]] = {
    "url": {"url": "https://example.com/menu?table=12&lang=de#drinks"},
    "text": {"text": "Tisch 12 — Grüße aus der Küche! 🍝"},
    "email": {"to": "orders@example.com", "subject": "Table 12 & friends", "body": "Two more, please?"},
    "sms": {"number": "+1 (555) 123-4567", "message": "Table 12: ready to order"},
    "wifi": {"ssid": 'Café "Bar"; 2,4:GHz', "password": "s3cr;t:pa\\ss,word", "encryption": "WPA",
             "hidden": True},
    "event": {"summary": "Launch; party, big", "start": "2026-05-08T18:30:00Z", "end": "2026-05-08T23:00:00Z",
              "location": "Hall 1, Brunswick", "description": "Doors at 18:00.\nBring this code."},
    "vcard": {"first_name": "Jörg", "last_name": "Müller", "organization": "ACME, Inc.", "title": "Chef",
              "phone": "+49 30 1234567", "email": "joerg@acme.example", "url": "https://acme.example",
              "address": "Hauptstr. 1; 10115 Berlin", "note": "Ask for the, uh, specials"},
}

LOGO = {"url": "https://logos.example/mark.png", "clear_background": True, "scale": 0.3}
DESIGNS: dict[str, dict[str, Any]] = {
    **{f"preset-{name}": {"style_preset": name} for name in PRESETS},
    "dots-square-eyes": {"shapes": {"body": "dots", "eye_frame": "square", "eye_ball": "rounded"}},
    "classy-circle-eyes": {"shapes": {"body": "classy", "eye_frame": "circle", "eye_ball": "circle"},
                           "eye_colors": {"frame": "#c62828", "ball": "#1b5e20"}},
    "radial-gradient": {"gradient": {"start": "#000000", "end": "#1a237e", "type": "radial"},
                        "shapes": {"body": "rounded"}},
    "left-to-right-gradient": {"gradient": {"start": "#004d40", "end": "#311b92", "type": "linear-left-to-right"}},
    "top-to-bottom-gradient": {"gradient": {"start": "#3e2723", "end": "#0d47a1"}},
    "transparent": {"transparent_background": True, "colors": {"foreground": "#212121", "background": "#fafafa"}},
    "logo-Q-cleared": {"error_correction": "Q", "logo": LOGO},
    "logo-H-over-modules": {"error_correction": "H", "logo": {**LOGO, "clear_background": False, "scale": 0.25},
                            "shapes": {"body": "dots"}},
    "logo-L-raised-to-Q": {"error_correction": "L", "logo": LOGO, "style_preset": "rounded"},
    "small-and-tight": {"size": 200, "margin": 2, "error_correction": "L"},
}


@pytest.mark.parametrize("design_name", DESIGNS)
@pytest.mark.parametrize("type", CONTENTS)
def test_every_type_and_design_reads_back_in_every_format(type: str, design_name: str) -> None:
    payload = encode_static(type, CONTENTS[type])
    design = parse_design(DESIGNS[design_name])
    logo = logo_png() if design.logo else None
    check_scannable(payload, design, logo)  # the guarantee accepts it …
    for format in ("png", "svg", "webp"):  # … and each format really reads back as exactly the payload
        data = render_bytes(payload, design, format, design.size, logo)
        assert reads_as(data, format, payload, design.colors.background), f"{format} did not read back"


def test_the_three_formats_share_one_geometry() -> None:
    payload = encode_static("url", CONTENTS["url"])
    design = parse_design({"style_preset": "dots"})
    svg = render_bytes(payload, design, "svg", 512).decode()
    assert svg.count('fill-rule="evenodd"') == 3 and "<circle" not in svg  # compact paths, one per layer
    png = to_image(render_bytes(payload, design, "png", 512), "png").convert("L")
    webp = to_image(render_bytes(payload, design, "webp", 512), "webp").convert("L")
    vector = to_image(svg.encode(), "svg").convert("L")
    assert ImageChops.difference(png, webp).getbbox() is None  # lossless WebP: the very same pixels
    far_apart = ImageChops.difference(png, vector).point(lambda v: 255 if v > 128 else 0).histogram()[255]
    assert far_apart < 0.005 * 512 * 512  # the independent SVG renderer agrees but for anti-aliased edges
