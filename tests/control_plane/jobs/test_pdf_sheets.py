"""Label sheets as a print shop gets them: every page rendered at 300 dpi, every code decoded, every label
read from the PDF's text right under its code."""

from __future__ import annotations

from typing import Any

import httpx
import pypdfium2 as pdfium
import pytest
import zxingcpp

from control_plane.jobs.worker import JobWorker
from tests.conftest import KeyFactory, bearer
from tests.control_plane.jobs.conftest import export, mint_group

DPI = 300
PT_PER_PX = 72 / DPI
MM = 72 / 25.4


def codes_with_labels(pdf_bytes: bytes) -> list[tuple[str, str]]:
    """(decoded payload, text printed under it) for every code on every page.

    zxing-cpp now and then reports one symbol twice at the same place, or a phantom symbol made of parts of
    its neighbours (seen: a numeric "9562" below a page's last row); such a repeat and anything that is not
    a URL are dropped. A code printed twice (at two places) still counts twice."""
    found = []
    document = pdfium.PdfDocument(pdf_bytes)
    for page in document:
        height = page.get_height()
        text = page.get_textpage()
        image = page.render(scale=DPI / 72).to_pil()
        seen: list[tuple[str, float, float]] = []
        for result in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode):
            corners = [result.position.top_left, result.position.top_right, result.position.bottom_left,
                       result.position.bottom_right]
            center = sum(p.x for p in corners) / 4 * PT_PER_PX
            bottom = height - max(p.y for p in corners) * PT_PER_PX
            if not result.text.startswith(("http://", "https://")) or any(
                    t == result.text and abs(x - center) < 5 * MM and abs(y - bottom) < 5 * MM for t, x, y in seen):
                continue
            seen.append((result.text, center, bottom))
            label = text.get_text_bounded(left=center - 12 * MM, right=center + 12 * MM, top=bottom,
                                          bottom=bottom - 8 * MM)
            found.append((result.text, label.strip()))
    return found


def expected(codes: list[dict[str, Any]]) -> dict[str, str]:
    return {f"{code['short_url']}?qr=1": code["name"] for code in codes}


@pytest.mark.parametrize(("sheet", "pages"), [
    ({"template": "avery-l7160", "paper": "a4"}, 3),
    ({"template": "avery-l7163", "crop_marks": True}, 4),
    ({"template": "avery-5160", "paper": "letter"}, 2),
    ({"template": "grid", "paper": "letter", "columns": 4, "rows": 5, "qr_size_mm": 30, "crop_marks": True}, 3),
])
async def test_every_code_of_a_50_code_group_decodes_to_its_short_url_above_its_label(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, sheet: dict[str, Any], pages: int) -> None:
    key = await make_key()
    group_id, codes = await mint_group(api, key, 50)
    job, pdf = await export(api, worker, key, {"format": "pdf_sheet", "group_id": group_id,
                                               "sheet": {**sheet, "label": "name"}})
    assert job["progress"] == {"done": 50, "total": 50}
    assert len(pdfium.PdfDocument(pdf)) == pages
    decoded = codes_with_labels(pdf)
    assert len(decoded) == 50
    assert dict(decoded) == expected(codes)  # 50 distinct payloads, each exactly short_url?qr=1, under its name


async def test_labels_can_show_the_slug_or_the_short_url(api: httpx.AsyncClient, make_key: KeyFactory,
                                                         worker: JobWorker) -> None:
    key = await make_key()
    group_id, codes = await mint_group(api, key, 3)
    _, pdf = await export(api, worker, key, {"format": "pdf_sheet", "group_id": group_id,
                                             "sheet": {"template": "avery-l7163", "label": "slug"}})
    assert sorted(label for _, label in codes_with_labels(pdf)) == sorted(code["slug"] for code in codes)
    _, pdf = await export(api, worker, key, {"format": "pdf_sheet", "group_id": group_id,
                                             "sheet": {"template": "avery-l7163", "label": "none"}})
    assert [label for _, label in codes_with_labels(pdf)] == ["", "", ""]


async def test_the_font_is_embedded_and_codes_are_vector_paths(api: httpx.AsyncClient, make_key: KeyFactory,
                                                               worker: JobWorker) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 2)
    _, pdf = await export(api, worker, key, {"format": "pdf_sheet", "group_id": group_id})
    assert b"/FontFile2" in pdf and b"/Subtype /Image" not in pdf
    page = pdfium.PdfDocument(pdf)[0]
    kinds = {obj.type for obj in page.get_objects()}
    assert kinds == {pdfium.raw.FPDF_PAGEOBJ_PATH, pdfium.raw.FPDF_PAGEOBJ_TEXT}


async def test_a_grid_too_small_for_its_payload_is_refused_naming_the_smallest_size_that_prints(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 5)
    body = {"format": "pdf_sheet", "group_id": group_id,
            "sheet": {"template": "grid", "columns": 8, "rows": 10, "qr_size_mm": 10}}
    refused = await api.post("/v1/exports", headers=bearer(key), json=body)
    assert refused.status_code == 422
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem["type"].endswith("/too-small-to-print")
    # 29 modules (version 3) + 2 × 4 quiet zone = 37 modules × 0.4 mm = 14.8 mm
    assert "14.8 mm" in problem["detail"]
    assert problem["errors"] == [{"field": "sheet.qr_size_mm", "message": "must be at least 14.8 mm"}]
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0  # no work was queued
    body["sheet"]["qr_size_mm"] = 14.8
    body["sheet"]["rows"] = 12
    accepted = await api.post("/v1/exports", headers=bearer(key), json=body)
    assert accepted.status_code == 202, accepted.text


async def test_a_template_too_small_names_the_sizes_that_would_print(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                    worker: JobWorker) -> None:
    key = await make_key()
    code = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}, "slug": "a" * 60,
        "design": {"error_correction": "H"}})
    assert code.status_code == 201, code.text
    refused = await api.post("/v1/exports", headers=bearer(key), json={
        "format": "pdf_sheet", "code_ids": [code.json()["id"]], "sheet": {"template": "avery-5160"}})
    assert refused.status_code == 422
    error = refused.json()["errors"][0]
    assert error["field"] == "sheet.template"
    assert "avery-l7160 or avery-l7163" in error["message"]


async def test_codes_keep_their_own_design_on_the_sheet(api: httpx.AsyncClient, make_key: KeyFactory,
                                                        worker: JobWorker) -> None:
    key = await make_key()
    group_id, plain = await mint_group(api, key, 4)
    _, styled = await mint_group(api, key, 4, design={"style_preset": "sunset"})  # gradient, rounded, circles
    dots = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "name": "Dots", "destination": {"type": "url", "url": "https://example.com/d"},
        "design": {"style_preset": "dots", "colors": {"foreground": "#0b3d91", "background": "#fff8e7"}}})
    codes = [*plain, *styled, dots.json()]
    _, pdf = await export(api, worker, key, {"format": "pdf_sheet", "code_ids": [c["id"] for c in codes],
                                             "sheet": {"template": "avery-l7163"}})
    assert b"/ShadingType 2" in pdf  # the sunset gradient as a vector shading, not an image
    assert dict(codes_with_labels(pdf)) == expected(codes)
