"""The design editor: a live preview and scannability verdict from the renderer the API uses."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.forms import field_errors, number_field
from control_plane.dashboard.visit import Visit, page
from control_plane.render.design import Design, merge_design, parse_design
from control_plane.render.images import effective_design, payload_for
from control_plane.render.logo import load_logo
from control_plane.render.output import render_bytes
from control_plane.render.scannability import check_scannable
from control_plane.services import qr_codes
from control_plane.services.schemas import QRCodeUpdate
from shared.problems import Problem

PREVIEW_SIZE = 320
BODY_SHAPES = ("square", "dots", "rounded", "classy")
EYE_SHAPES = ("square", "rounded", "circle")
LEVELS = ("L", "M", "Q", "H")


def design_patch(form: Mapping[str, str]) -> dict[str, Any]:
    """The editor's fields as a design patch in the API's shape (docs/api.md §2.6)."""
    patch: dict[str, Any] = {
        "colors": {"foreground": form.get("foreground", ""), "background": form.get("background", "")},
        "shapes": {"body": form.get("body", ""), "eye_frame": form.get("eye_frame", ""),
                   "eye_ball": form.get("eye_ball", "")},
        "error_correction": form.get("error_correction", ""),
    }
    if (margin := number_field(form.get("margin", ""))) is not None:
        patch["margin"] = margin
    return patch


def _values(design: Mapping[str, Any]) -> dict[str, str]:
    return {"foreground": design["colors"]["foreground"], "background": design["colors"]["background"],
            "body": design["shapes"]["body"], "eye_frame": design["shapes"]["eye_frame"],
            "eye_ball": design["shapes"]["eye_ball"], "error_correction": design["error_correction"],
            "margin": str(design["margin"])}


async def _verdict(visit: Visit, code: Mapping[str, Any], patch: dict[str, Any]) -> tuple[bytes | None, str, bool]:
    """The preview image (SVG) and the verdict on it: what saving this design would answer."""
    settings = visit.stores.services.settings
    try:
        design: Design = parse_design(merge_design(code["design"], patch))
    except Problem as problem:
        return None, "; ".join(field_errors(problem).values()), False
    payload = payload_for(code, settings)
    logo = await load_logo(visit.stores.db, design.logo.sha256) if design.logo and design.logo.sha256 else None
    image = await asyncio.to_thread(render_bytes, payload, design, "svg", PREVIEW_SIZE, logo)
    try:
        await asyncio.to_thread(check_scannable, payload, design, logo)
    except Problem as problem:
        return image, problem.detail, False
    return image, "Scannable: the rendered image reads back as this code.", True


def _data_url(svg: bytes | None) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode() if svg else ""


async def _editor(visit: Visit, code: Mapping[str, Any], values: dict[str, str], *,
                  errors: dict[str, str] | None = None, status: int = 200, notice: str = "") -> Response:
    image, verdict, scannable = await _verdict(visit, code, design_patch(values))
    return visit.render("codes/design.html", {
        "code": code, "values": values, "errors": errors or {}, "preview": _data_url(image), "verdict": verdict,
        "scannable": scannable, "notice": notice, "body_shapes": BODY_SHAPES,
        "eye_shapes": EYE_SHAPES, "levels": LEVELS}, status)


@page()
async def editor(visit: Visit) -> Response:
    code = await qr_codes.get_code(visit.stores.services, visit.principal, visit.request.path_params["code_id"])
    notice = "Saved. The image below is the code's image_url." if visit.request.query_params.get("saved") else ""
    return await _editor(visit, code, _values(effective_design(code["design"])), notice=notice)


@page()
async def preview(visit: Visit) -> Response:
    code = await qr_codes.get_code(visit.stores.services, visit.principal, visit.request.path_params["code_id"])
    image, verdict, scannable = await _verdict(visit, code, design_patch(visit.request.query_params))
    return JSONResponse({"image": _data_url(image), "verdict": verdict, "scannable": scannable},
                        headers={"Cache-Control": "no-store"})


@page("qr:write")
async def save(visit: Visit) -> Response:
    ctx, key, code_id = visit.stores.services, visit.principal, visit.request.path_params["code_id"]
    try:
        await qr_codes.update_code(ctx, key, code_id, QRCodeUpdate(design=design_patch(visit.form)))
    except Problem as problem:
        code = await qr_codes.get_code(ctx, key, code_id)
        return await _editor(visit, code, visit.form, errors=field_errors(problem), status=problem.status)
    return RedirectResponse(f"/app/codes/{code_id}/design?saved=1", 303)


routes = [
    Route("/codes/{code_id}/design", editor, methods=["GET"]),
    Route("/codes/{code_id}/design", save, methods=["POST"]),
    Route("/codes/{code_id}/design/preview", preview, methods=["GET"]),
]
