from __future__ import annotations

from typing import Any

import pytest

from control_plane.render.design import parse_design
from control_plane.render.geometry import build_geometry
from control_plane.render.matrix import qr_matrix
from control_plane.render.raster import render_image
from control_plane.render.scannability import (
    MIN_CONTRAST,
    UnscannableDesign,
    check_scannable,
    contrast_ratio,
    decodes_to,
)
from tests.control_plane.render.logos import logo_png

PAYLOAD = "https://qr.test/abc1234?qr=1"
VCARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Müller;Jörg;;;\r\nFN:Jörg Müller\r\nTEL:+49 30 1234567\r\nEND:VCARD"


def refusal(design: dict[str, Any], payload: str = PAYLOAD) -> UnscannableDesign:
    with pytest.raises(UnscannableDesign) as raised:
        check_scannable(payload, parse_design(design), logo_png() if "logo" in design else None)
    problem = raised.value
    assert problem.status == 422 and problem.type == "https://scanroute.dev/problems/unscannable-design"
    return problem


def test_wcag_contrast_ratio() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)


def test_contrast_1_2_to_1_is_refused_before_rendering() -> None:
    problem = refusal({"colors": {"foreground": "#e6e6e6", "background": "#ffffff"}})
    assert "1.2" in problem.detail and f"{MIN_CONTRAST:g}:1" in problem.detail
    assert problem.errors == [{"field": "design.colors.foreground", "message": problem.detail}]


def test_a_faint_gradient_end_or_eye_colour_is_refused_too() -> None:
    assert refusal({"gradient": {"start": "#000000", "end": "#bbbbbb"}}).errors[0]["field"] == "design.gradient.end"
    problem = refusal({"eye_colors": {"frame": "#000000", "ball": "#ffeb3b"}})
    assert problem.errors[0]["field"] == "design.eye_colors.ball"


def test_light_modules_on_a_dark_background_are_refused() -> None:
    problem = refusal({"colors": {"foreground": "#ffffff", "background": "#000000"}})
    assert "not darker than the background" in problem.detail


def test_margin_0_is_refused_because_the_code_needs_a_quiet_zone() -> None:
    problem = refusal({"margin": 0})
    assert "quiet zone" in problem.detail
    check_scannable(PAYLOAD, parse_design({"margin": 1}))  # one module of quiet zone already reads


def test_content_too_long_for_the_level_is_refused() -> None:
    problem = refusal({"error_correction": "H"}, payload="x" * 2000)
    assert "too long" in problem.detail and problem.errors[0]["field"] == "design.error_correction"


@pytest.mark.parametrize("payload", [PAYLOAD, VCARD])
def test_a_30_percent_logo_needs_more_than_level_L_so_a_logo_raises_the_level_to_Q(payload: str) -> None:
    design = parse_design({"error_correction": "L", "logo": {"url": "https://x.example/l.png", "scale": 0.3}})
    at_level_l = render_image(build_geometry(qr_matrix(payload, "L"), design), 512, logo_png())
    assert not decodes_to(at_level_l, payload)  # what printing at the requested level would give
    assert design.effective_error_correction == "Q"
    check_scannable(payload, design, logo_png())  # what is printed instead


def test_modules_narrower_than_2_px_are_refused_with_the_size_to_change() -> None:
    problem = refusal({"size": 200, "error_correction": "L"}, payload="x" * 800)
    assert problem.errors[0]["field"] == "design.size" and "1.9 px" in problem.detail
    check_scannable("x" * 800, parse_design({"size": 400, "error_correction": "L"}))


def test_a_square_eye_ball_in_a_circle_frame_reads_at_every_size_a_download_allows() -> None:
    """Sharp ball corners came within 0.38 module of the frame's hole, and the eyes went unread at these sizes
    (7–13 px a module, far above the 2-px floor), though the design read at its own 512 px."""
    design = parse_design({"shapes": {"body": "square", "eye_frame": "circle", "eye_ball": "square"}})
    check_scannable(PAYLOAD, design)
    unread = [size for size in (204, 208, 216, 248, 252, 268, 288, 328, 340, 356, 396, 416, 504)
              if not decodes_to(render_image(build_geometry(qr_matrix(PAYLOAD, "M"), design), size), PAYLOAD)]
    assert unread == []
