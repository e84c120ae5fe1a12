"""Print and import from the dashboard: the same services and jobs as /v1/exports and /v1/imports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import asyncpg
import httpx
import pypdfium2 as pdfium
import pytest
import redis.asyncio as aioredis

from control_plane.jobs.worker import JobWorker, start_worker
from shared.database import create_pool
from shared.settings import ControlPlaneSettings, JobSettings
from tests.conftest import KeyFactory, bearer
from tests.control_plane.dashboard.conftest import BrowserFactory, UserFactory, csrf_of, post_form, sign_in


@pytest.fixture
async def worker(cp_settings: ControlPlaneSettings, redis: aioredis.Redis) -> AsyncIterator[JobWorker]:
    db = await create_pool(cp_settings.stores.database_url, min_size=1, max_size=2)
    try:
        yield await start_worker(JobSettings(control_plane=cp_settings), db, redis)
    finally:
        await db.close()


async def test_an_editor_imports_a_campaign_then_prints_its_labels(
        browser: BrowserFactory, make_user: UserFactory, worker: JobWorker, db: asyncpg.Connection) -> None:
    await make_user(role="editor")
    client = browser()
    await sign_in(client)
    bad = await post_form(client, "/app/imports", "/app/imports", {"csv": "name,url\nA,https://example.com/a\nB,nope\n"})
    assert bad.status_code == 303
    while await worker.run_once():
        pass
    page = (await client.get("/app/imports")).text
    assert "failed" in page and "row 3, url" in page
    assert await db.fetchval("SELECT count(*) FROM qr_codes") == 0

    group = await post_form(client, "/app/groups/new", "/app/groups", {"name": "Tables", "status": "active"})
    group_id = group.headers["location"].split("/")[-1].split("?")[0]
    rows = "".join(f"Table {n},https://example.com/{n},{group_id}\n" for n in range(1, 4))
    await post_form(client, "/app/imports", "/app/imports", {"csv": "name,url,group_id\n" + rows})
    while await worker.run_once():
        pass
    assert await db.fetchval("SELECT count(*) FROM qr_codes WHERE group_id = $1", group_id) == 3

    started = await post_form(client, "/app/exports", "/app/exports", {
        "group_id": group_id, "format": "pdf_sheet", "template": "avery-5160", "label": "name"})
    assert started.status_code == 303
    export_id = started.headers["location"].split("started=")[1]
    while await worker.run_once():
        pass
    page = (await client.get("/app/exports")).text
    assert f"/app/exports/{export_id}/file" in page
    file = await client.get(f"/app/exports/{export_id}/file")
    assert file.status_code == 200 and file.headers["content-type"] == "application/pdf"
    assert file.headers["x-content-type-options"] == "nosniff" and file.headers["cache-control"] == "private, no-store"
    assert file.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"
    text = pdfium.PdfDocument(file.content)[0].get_textpage().get_text_range()
    assert all(f"Table {n}" in text for n in range(1, 4))


async def test_a_viewer_can_print_but_not_import(browser: BrowserFactory, make_user: UserFactory) -> None:
    await make_user(role="viewer")
    client = browser()
    await sign_in(client)
    assert (await client.get("/app/exports")).status_code == 200
    assert (await client.get("/app/imports")).status_code == 403


async def test_a_paste_that_is_not_an_import_is_refused_on_the_page(browser: BrowserFactory, make_user: UserFactory,
                                                                    db: asyncpg.Connection) -> None:
    await make_user(role="editor")
    client = browser()
    await sign_in(client)
    refused = await post_form(client, "/app/imports", "/app/imports", {"csv": "name,colour\nA,red\n"})
    assert refused.status_code == 422 and "unknown column &#39;colour&#39;" in refused.text
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_paste_of_800_kb_of_csv_is_imported_not_refused_as_too_large(browser: BrowserFactory,
                                                                             make_user: UserFactory,
                                                                             db: asyncpg.Connection) -> None:
    """The box takes up to 1 MiB of CSV; the browser sends it url-encoded, where a comma, a slash or a line
    break (CRLF) takes 3 bytes a character, so 800 KB of CSV is a form of 1.16 MB."""
    await make_user(role="editor")
    client = browser()
    await sign_in(client)
    rows = "".join(f"Table {n},https://shop.example.com/de/p/{n}/menu/?ref=qr&lang=de,fall|menu|print,fall24\r\n"
                   for n in range(9000))
    csv = "name,url,tags,utm_campaign\r\n" + rows
    token = csrf_of((await client.get("/app/imports")).text)
    body = urlencode({"csrf_token": token, "csv": csv, "dry_run": "on"})  # what a browser sends for the form
    assert len(csv.encode()) < 820_000 and len(body) > 1 << 20
    answer = await client.post("/app/imports", content=body,
                               headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 303, answer.text[:300]
    assert await db.fetchval("SELECT count(*) FROM jobs") == 1


async def test_a_paste_over_1_mib_is_refused_by_its_box(browser: BrowserFactory, make_user: UserFactory,
                                                        db: asyncpg.Connection) -> None:
    await make_user(role="editor")
    client = browser()
    await sign_in(client)
    csv = "name,url\r\n" + "".join(f"Table {n},https://example.com/{n}\r\n" for n in range(40_000))
    assert len(csv.encode()) > 1 << 20
    refused = await post_form(client, "/app/imports", "/app/imports", {"csv": csv})
    assert refused.status_code == 413 and refused.headers["content-type"].startswith("text/html")
    assert "is larger than 1 MiB" in refused.text
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0


async def test_an_export_without_a_group_says_so_under_the_group_field(browser: BrowserFactory,
                                                                      make_user: UserFactory) -> None:
    await make_user(role="viewer")
    client = browser()
    await sign_in(client)
    page = await post_form(client, "/app/exports", "/app/exports", {"group_id": "", "format": "zip"})
    assert page.status_code == 422
    assert ('<p class="error" id="f-group_id-error">select codes with group_id, code_ids, folder_id or tag</p>'
            in page.text), page.text
    assert "tag: select codes" not in page.text and ": select codes" not in page.text


async def test_an_export_the_print_check_refuses_says_so_under_the_label_sheet_select(
        browser: BrowserFactory, make_user: UserFactory, make_key: KeyFactory, api: httpx.AsyncClient,
        db: asyncpg.Connection) -> None:
    """The service names the sheet's fields by their path in the request (`sheet.template`, docs/exports.md);
    the form's inputs are `template` and `label`, and its selection is the Group select."""
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "Big"})).json()
    code = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}, "slug": "a" * 60, "group_id": group["id"],
        "design": {"error_correction": "H"}})
    assert code.status_code == 201, code.text
    await make_user(role="viewer")
    client = browser()
    await sign_in(client)

    page = await post_form(client, "/app/exports", "/app/exports", {
        "group_id": group["id"], "format": "pdf_sheet", "template": "avery-5160", "label": "name"})
    assert page.status_code == 422
    assert ('<select id="f-template" name="template" aria-invalid="true" aria-describedby="f-template-error">'
            in page.text), page.text
    assert '<p class="error" id="f-template-error">codes print at ' in page.text
    assert "avery-l7160 or avery-l7163" in page.text.split('id="f-template-error">')[1].split("</p>")[0]
    assert "sheet.template" not in page.text and 'role="alert"' not in page.text

    forged = await post_form(client, "/app/exports", "/app/exports", {
        "group_id": group["id"], "format": "pdf_sheet", "template": "avery-l7163", "label": "colour"})
    assert forged.status_code == 422
    assert '<p class="error" id="f-label-error">' in forged.text and "sheet.label" not in forged.text

    empty = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "Empty"})).json()
    nothing = await post_form(client, "/app/exports", "/app/exports", {
        "group_id": empty["id"], "format": "pdf_sheet", "template": "avery-l7163", "label": "name"})
    assert nothing.status_code == 422
    assert '<p class="error" id="f-group_id-error">selects no code: there is nothing to print</p>' in nothing.text
    assert "selection:" not in nothing.text
    assert await db.fetchval("SELECT count(*) FROM jobs") == 0
