"""Images through the API: design checks on create/PATCH, downloads, public content-addressed URLs."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from PIL import Image

from tests.conftest import KeyFactory, bearer
from tests.control_plane.render.decoding import reads_as, to_image
from tests.control_plane.render.logos import logo_png
from tests.local_http import local_server

MENU = {"destination": {"type": "url", "url": "https://example.com/menu"}}


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OUTBOUND_ALLOWED_HOSTS": "127.0.0.1"}


@pytest.fixture
async def logo_server() -> AsyncIterator[str]:
    async def logo(request: web.Request) -> web.Response:
        return web.Response(body=logo_png(), content_type="image/png")

    async with local_server([web.get("/logo.png", logo)]) as base:
        yield f"{base}/logo.png"


async def create(api: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    return await api.post("/v1/qr-codes", headers=bearer(key), json={**MENU, **body})


async def test_a_new_code_has_a_public_image_that_scans_to_its_short_url(api: httpx.AsyncClient,
                                                                         make_key: KeyFactory) -> None:
    code = (await create(api, await make_key())).json()
    assert code["design"]["size"] == 512 and code["design"]["error_correction"] == "M"  # defaults filled in
    assert code["image_url"].startswith("http://cp.test/i/") and code["image_url"].endswith(".png")
    image = await api.get(code["image_url"])  # no API key: the URL itself is the secret
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert reads_as(image.content, "png", code["short_url"] + "?qr=1")
    again = await api.get(code["image_url"], headers={"If-None-Match": image.headers["etag"]})
    assert again.status_code == 304
    for format in ("svg", "webp"):
        other = await api.get(code["image_url"].replace(".png", f".{format}"))
        assert other.status_code == 200 and reads_as(other.content, format, code["short_url"] + "?qr=1")


async def test_changing_the_design_changes_the_url_and_keeps_the_old_image(api: httpx.AsyncClient,
                                                                          make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await create(api, key)).json()
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                              json={"design": {"style_preset": "dots", "format": "svg"}})
    assert patched.status_code == 200, patched.text
    new = patched.json()
    assert new["design"]["shapes"] == {"body": "dots", "eye_frame": "circle", "eye_ball": "circle"}
    assert new["image_url"] != code["image_url"] and new["image_url"].endswith(".svg")
    assert new["preview_url"] != code["preview_url"]
    svg = await api.get(new["image_url"])
    assert svg.headers["content-type"] == "image/svg+xml" and reads_as(svg.content, "svg", code["short_url"] + "?qr=1")
    assert (await api.get(code["image_url"])).status_code == 200  # printed/cached copies keep working
    renamed = (await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key), json={"name": "x"})).json()
    assert renamed["image_url"] == new["image_url"]  # same payload and design: same URL


async def test_design_patch_merges(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await create(api, key, design={"size": 300, "colors": {"foreground": "#1a237e"}})).json()
    patched = (await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                               json={"design": {"margin": 2}})).json()
    assert patched["design"]["size"] == 300 and patched["design"]["margin"] == 2
    assert patched["design"]["colors"]["foreground"] == "#1a237e"


@pytest.mark.parametrize(("design", "reason"), [
    ({"colors": {"foreground": "#e6e6e6"}}, "contrast"),
    ({"margin": 0}, "quiet zone"),
])
async def test_unscannable_designs_are_refused_on_create_and_patch(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                   design: dict[str, Any], reason: str) -> None:
    key = await make_key()
    refused = await create(api, key, design=design)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "https://scanroute.dev/problems/unscannable-design"
    assert reason in refused.json()["detail"]
    assert (await api.get("/v1/qr-codes", headers=bearer(key))).json()["total"] == 0  # nothing was created
    code = (await create(api, key)).json()
    patched = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key), json={"design": design})
    assert patched.status_code == 422 and patched.json()["type"].endswith("/unscannable-design")
    unchanged = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()
    assert unchanged["design"] == code["design"]


async def test_invalid_design_fields_are_field_level_422(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    refused = await create(api, await make_key(), design={"size": 100, "colors": {"foreground": "red"},
                                                          "shapes": {"body": "stars"}})
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["errors"]} == {
        "design.size", "design.colors.foreground", "design.shapes.body"}


async def test_download_is_authenticated_and_isolated(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await create(api, key)).json()
    url = f"/v1/qr-codes/{code['id']}/download"
    assert (await api.get(url)).status_code == 401
    assert (await api.get(url, headers=bearer(await make_key(scopes=("webhooks:read",))))).status_code == 403
    assert (await api.get(url, headers=bearer(await make_key("globex")))).status_code == 404
    assert (await api.get(url, headers=bearer(await make_key(livemode=False)))).status_code == 404
    webp = await api.get(url, params={"format": "webp", "size": 1000}, headers=bearer(key))
    assert webp.status_code == 200 and webp.headers["content-type"] == "image/webp"
    assert webp.headers["content-disposition"] == f'attachment; filename="{code["id"]}.webp"'
    assert reads_as(webp.content, "webp", code["short_url"] + "?qr=1")
    assert to_image(webp.content, "webp").size == (1000, 1000)
    bad = await api.get(url, params={"format": "gif", "size": 5000}, headers=bearer(key))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "format"


async def test_a_download_too_small_to_scan_is_a_422_naming_the_smallest_size(api: httpx.AsyncClient,
                                                                               make_key: KeyFactory) -> None:
    """Checked at 2048 px, a 2,000-character text has 169 + 8 modules across: at 200 px they would be 1.1 px."""
    key = await make_key()
    text = ("The quick brown fox jumps over the lazy dog; " * 50)[:2000]
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "text", "content": {"text": text}, "design": {"size": 2048}})).json()
    refused = await api.get(code["download_url"], params={"size": 200}, headers=bearer(key))
    assert refused.status_code == 422 and refused.json()["type"].endswith("/unscannable-design")
    [error] = refused.json()["errors"]
    assert error["field"] == "size" and "this code needs 354 px or more" in error["message"], error
    smallest = await api.get(code["download_url"], params={"size": 354}, headers=bearer(key))
    assert smallest.status_code == 200 and reads_as(smallest.content, "png", text)
    spec = (await api.get("/openapi.json")).json()
    described = spec["paths"]["/v1/qr-codes/{code_id}/download"]["get"]["responses"]["422"]["description"]
    assert "smallest at which the code scans" in described


LONG_TEXT = "The quick brown fox jumps over the lazy dog; " * 50


@pytest.mark.parametrize(("length", "preset", "size", "reads_at"), [(300, "default", 200, 231),
                                                                    (800, "dots", 293, 351)])
async def test_a_download_whose_image_does_not_decode_is_a_422_naming_a_size_that_does(
        api: httpx.AsyncClient, make_key: KeyFactory, length: int, preset: str, size: int, reads_at: int) -> None:
    """Designed at 2048 px (proven at 1024); at these sizes modules are 2.5 px and over, yet the image does not
    read: dots are 0.9 module wide, and squares alias at fractional module widths."""
    key = await make_key()
    text = LONG_TEXT[:length]
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "text", "content": {"text": text},
        "design": {"size": 2048, "style_preset": preset}})).json()
    for _ in range(2):  # the second answer comes from the verdict cached with the image
        refused = await api.get(code["download_url"], params={"size": size}, headers=bearer(key))
        assert refused.status_code == 422 and refused.json()["type"].endswith("/unscannable-design")
        [error] = refused.json()["errors"]
        assert error["field"] == "size" and f"At {reads_at} px it reads" in error["message"], error
    for format in ("png", "svg", "webp"):
        download = await api.get(code["download_url"], params={"size": reads_at, "format": format},
                                 headers=bearer(key))
        assert download.status_code == 200 and reads_as(download.content, format, text)
    svg = await api.get(code["download_url"], params={"size": size, "format": "svg"}, headers=bearer(key))
    assert svg.status_code == 422  # proven by its raster twin


async def test_circle_eye_frames_download_readable_at_sizes_that_did_not_scan(api: httpx.AsyncClient,
                                                                              make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await create(api, key, slug="menu-table",
                         design={"shapes": {"body": "square", "eye_frame": "circle", "eye_ball": "square"}})).json()
    for size in (504, 416, 356, 288, 252, 216):
        download = await api.get(code["download_url"], params={"size": size}, headers=bearer(key))
        assert download.status_code == 200, download.text
        assert reads_as(download.content, "png", code["short_url"] + "?qr=1"), size


async def test_unknown_images_and_previews_are_404(api: httpx.AsyncClient) -> None:
    for path in ("/i/" + "0" * 32 + ".png", "/i/../../etc/passwd", "/qr/" + "0" * 32, "/qr/qr_abc",
                 "/logos/" + "0" * 64 + ".png", "/logos/x.png"):
        response = await api.get(path)
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


async def test_preview_page_shows_the_code_without_naming_it(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    code = (await create(api, await make_key(), name="Secret launch table")).json()
    page = await api.get(code["preview_url"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    image = code["image_url"].removeprefix("http://cp.test").removesuffix(".png")
    assert f'src="{image}.svg"' in page.text and "Secret launch" not in page.text and code["id"] not in page.text


async def test_a_logo_is_fetched_embedded_and_raises_the_level(api: httpx.AsyncClient, make_key: KeyFactory,
                                                               logo_server: str, db: asyncpg.Connection[Any]) -> None:
    response = await create(api, await make_key(), design={
        "error_correction": "L", "logo": {"url": logo_server, "scale": 0.3}})
    assert response.status_code == 201, response.text
    code = response.json()
    assert code["design"]["error_correction"] == "Q" and len(code["design"]["logo"]["sha256"]) == 64
    image = await api.get(code["image_url"])
    assert reads_as(image.content, "png", code["short_url"] + "?qr=1")
    svg = await api.get(code["image_url"].replace(".png", ".svg"))
    assert b"data:image/png;base64," in svg.content and reads_as(svg.content, "svg", code["short_url"] + "?qr=1")


@pytest.mark.parametrize(("url", "reason"), [
    ("https://127.0.0.2/logo.png", "the URL resolves to a loopback address, not a public one"),
    ("https://10.0.0.7/logo.png", "the URL resolves to a private address"),
    ("https://169.254.169.254/latest/meta-data/iam", "the URL resolves to a link-local address"),
    ("https://localhost/logo.png", "the URL resolves to a loopback address"),
    ("http://example.com/logo.png", "the URL must be an https URL"),
    ("file:///etc/passwd", "must be an https URL"),
])
async def test_logo_urls_to_private_addresses_are_refused(api: httpx.AsyncClient, make_key: KeyFactory,
                                                          url: str, reason: str) -> None:
    refused = await create(api, await make_key(), design={"logo": {"url": url}})
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == "design.logo.url" and reason in error["message"]


async def test_codes_minted_in_bulk_get_checked_designs_and_working_images(
        api: httpx.AsyncClient, make_key: KeyFactory, database_url: str, cp_settings: Any) -> None:
    from control_plane.render.images import sync_designs, with_image_secret
    from shared.database import create_pool
    from shared.ids import new_id, new_slug

    key = await make_key()
    assert (await create(api, key)).status_code == 201  # the organisation's first code: its org_id is below
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            org_id = await conn.fetchval("SELECT org_id FROM qr_codes LIMIT 1")
            ids = [new_id("qr") for _ in range(25)]
            await conn.executemany(
                "INSERT INTO qr_codes (id, org_id, livemode, kind, type, slug, domain, design)"
                " VALUES ($1, $2, true, 'dynamic', 'url', $3, 'qr.test', $4)",
                [(code_id, org_id, new_slug(), {"style_preset": "classy"}) for code_id in ids])
            await sync_designs(conn, await with_image_secret(cp_settings, conn), ids)
    finally:
        await pool.close()
    listed = (await api.get("/v1/qr-codes", params={"limit": 100}, headers=bearer(key))).json()["data"]
    minted = [code for code in listed if code["id"] in ids]
    assert len(minted) == 25 and {code["design"]["shapes"]["body"] for code in minted} == {"classy"}
    for code in minted[:3]:
        image = await api.get(code["image_url"])
        assert image.status_code == 200 and reads_as(image.content, "png", code["short_url"] + "?qr=1")


async def test_a_static_code_encodes_its_content(api: httpx.AsyncClient, make_key: KeyFactory, database_url: str,
                                                 cp_settings: Any) -> None:
    from control_plane.render.images import sync_design, with_image_secret
    from shared.database import create_pool
    from shared.ids import new_id

    key = await make_key()
    assert (await create(api, key)).status_code == 201
    content = {"ssid": "Café; Guests", "password": "pa:ss", "encryption": "WPA", "hidden": False}
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            org_id = await conn.fetchval("SELECT org_id FROM qr_codes LIMIT 1")
            code_id = new_id("sqr")
            await conn.execute("INSERT INTO qr_codes (id, org_id, livemode, kind, type, content, design)"
                               " VALUES ($1, $2, true, 'static', 'wifi', $3, $4)",
                               code_id, org_id, content, {"style_preset": "rounded", "format": "webp"})
            await sync_design(conn, await with_image_secret(cp_settings, conn), code_id)
    finally:
        await pool.close()
    code = (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).json()
    assert code["image_url"].endswith(".webp") and code["short_url"] is None
    expected = "WIFI:T:WPA;S:Café\\; Guests;P:pa\\:ss;H:false;;"
    assert reads_as((await api.get(code["image_url"])).content, "webp", expected)
    download = await api.get(code["download_url"], params={"format": "svg"}, headers=bearer(key))
    assert reads_as(download.content, "svg", expected)


async def test_an_event_saved_without_an_offset_keeps_the_utc_time_it_was_encoded_with(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    from control_plane.cli.migrate import migration_files

    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "event", "content": {"summary": "Launch", "start": "2026-05-08T19:00:00Z"}})).json()
    # As saved before a date-time needed an offset (docs/api.md §4.1); the image still encodes 19:00 UTC.
    await db.execute("""UPDATE qr_codes SET content = content || '{"start": "2026-05-08T19:00:00"}' WHERE id = $1""",
                     code["id"])
    await db.execute(dict(migration_files())["0016_event_times_with_offsets"])
    start = await db.fetchval("SELECT content->>'start' FROM qr_codes WHERE id = $1", code["id"])
    assert start == "2026-05-08T19:00:00Z"
    download = await api.get(code["download_url"], headers=bearer(key))
    payload = "BEGIN:VEVENT\r\nSUMMARY:Launch\r\nDTSTART:20260508T190000Z\r\nEND:VEVENT"
    assert download.status_code == 200 and reads_as(download.content, "png", payload)


async def test_a_minted_print_run_shares_one_checked_design(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "Run"})).json()
    minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key),
                            json={"count": 20, "design": {"style_preset": "sunset", "format": "svg"}})
    assert minted.status_code == 201, minted.text
    codes = minted.json()["data"]
    assert {code["design"]["shapes"]["body"] for code in codes} == {"rounded"}  # normalised from the preset
    assert len({code["image_url"] for code in codes}) == 20
    for code in (codes[0], codes[-1]):
        assert reads_as((await api.get(code["image_url"])).content, "svg", code["short_url"] + "?qr=1")
    refused = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key),
                             json={"count": 5, "design": {"colors": {"foreground": "#eeeeee"}}})
    assert refused.status_code == 422 and refused.json()["type"].endswith("/unscannable-design")


async def test_a_preset_that_is_not_a_name_is_a_422(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    refused = await create(api, await make_key(), design={"style_preset": {"name": "dots"}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "design.style_preset"


async def test_an_uploaded_logo_is_kept_once_and_reusable(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    upload = "data:image/png;base64," + base64.b64encode(logo_png()).decode()
    first = await create(api, key, design={"logo": {"url": upload, "scale": 0.25}})
    assert first.status_code == 201, first.text
    logo = first.json()["design"]["logo"]
    assert logo["url"] == f"/logos/{logo['sha256']}.png"  # the upload is not repeated in every response
    served = await api.get(logo["url"])
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    code = first.json()
    assert reads_as((await api.get(code["image_url"])).content, "png", code["short_url"] + "?qr=1")
    again = await create(api, key, design={"logo": {"url": logo["url"]}})
    assert again.status_code == 201 and again.json()["design"]["logo"]["sha256"] == logo["sha256"]


@pytest.mark.parametrize(("url", "reason"), [
    ("data:text/html;base64,PGgxPg==", "data:image/png|jpeg|webp|gif;base64"),
    ("data:image/png;base64,not*base64", "data:image/png|jpeg|webp|gif;base64"),
    ("data:image/png;base64,aGVsbG8=", "not a readable PNG"),
    ("/logos/" + "0" * 64 + ".png", "no logo was uploaded"),
])
async def test_bad_uploads_are_refused(api: httpx.AsyncClient, make_key: KeyFactory, url: str, reason: str) -> None:
    refused = await create(api, await make_key(), design={"logo": {"url": url}})
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == "design.logo.url" and reason in error["message"], error


def data_url(format: str, size: tuple[int, int] = (120, 120), media_type: str = "image/png") -> str:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 90, 200)).save(out, format)
    return f"data:{media_type};base64," + base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize(("url", "reason"), [
    (data_url("BMP"), "not a readable PNG, JPEG, WebP or GIF image"),  # Pillow reads ~40 formats; we take 4
    (data_url("TIFF"), "not a readable PNG, JPEG, WebP or GIF image"),
    (data_url("JPEG"), "it is a JPEG image, not the image/png it was sent as"),
])
async def test_logos_are_png_jpeg_webp_or_gif_of_the_type_they_are_sent_as(
        api: httpx.AsyncClient, make_key: KeyFactory, url: str, reason: str) -> None:
    key = await make_key()
    refused = await create(api, key, design={"logo": {"url": url}})
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert error["field"] == "design.logo.url" and reason in error["message"], error
    jpeg = data_url("JPEG", media_type="image/jpeg")
    assert (await create(api, key, design={"logo": {"url": jpeg}})).status_code == 201


async def test_a_logo_is_at_most_4096_px_a_side(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    refused = await create(api, key, design={"logo": {"url": data_url("PNG", (8000, 100))}})  # 0.8 Mpx: not the area
    assert refused.status_code == 422
    assert "it is 8000×100 pixels; at most 4096×4096" in refused.json()["errors"][0]["message"]
    assert (await create(api, key, design={"logo": {"url": data_url("PNG", (4096, 100))}})).status_code == 201


async def test_image_urls_survive_a_restart_and_follow_the_configured_secret(
        api: httpx.AsyncClient, make_key: KeyFactory, env: dict[str, str]) -> None:
    from control_plane.api.app import create_app
    from shared.settings import ControlPlaneSettings

    key = await make_key()
    code = (await create(api, key)).json()

    async def image_url_in(settings_env: dict[str, str]) -> str:
        app = create_app(ControlPlaneSettings.from_env(settings_env))
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
            return str((await client.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["image_url"])

    assert await image_url_in(env) == code["image_url"]  # another process, no secret configured: same URL
    assert await image_url_in({**env, "IMAGE_URL_SECRET": "another-secret-0123456789"}) != code["image_url"]
