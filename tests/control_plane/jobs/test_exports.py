"""Image bundles, CSV files, signed links for print shops, events, and jobs that survive a dead worker."""

from __future__ import annotations

import csv
import io
import tracemalloc
import uuid
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pypdfium2 as pdfium
import pytest
import redis.asyncio as aioredis
import resvg_py
import zxingcpp
from PIL import Image

from control_plane.api.app import create_app
from control_plane.cli.migrate import migration_files
from control_plane.jobs import exporting
from control_plane.jobs.worker import JobWorker, start_worker
from control_plane.render.design import parse_design
from control_plane.render.output import render_raster
from control_plane.render.scannability import decodes_to
from shared.database import create_pool
from shared.settings import ControlPlaneSettings, JobSettings
from tests.conftest import KeyFactory, bearer
from tests.control_plane.jobs.conftest import export, mint_group, run_job


def decode(data: bytes, image_format: str) -> list[str]:
    if image_format == "pdf":
        image = pdfium.PdfDocument(data)[0].render(scale=300 / 72).to_pil()
    else:
        if image_format == "svg":  # an independent renderer, not our raster code
            data = bytes(resvg_py.svg_to_bytes(svg_string=data.decode(), skip_system_fonts=True, dpi=300))
        image = Image.open(io.BytesIO(data))
    return [r.text for r in zxingcpp.read_barcodes(image.convert("RGB"))]


@pytest.mark.parametrize("image_format", ["svg", "png", "pdf"])
async def test_a_zip_holds_one_decodable_image_per_code_named_by_slug_and_a_manifest(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, image_format: str) -> None:
    key = await make_key()
    group_id, codes = await mint_group(api, key, 50, tags=["fall24"])
    job, data = await export(api, worker, key, {"format": "zip", "group_id": group_id,
                                                "image_format": image_format, "size_mm": 25, "dpi": 300})
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist()[0] == "manifest.csv"
    by_slug = {code["slug"]: code for code in codes}
    assert sorted(archive.namelist()[1:]) == sorted(f"{slug}.{image_format}" for slug in by_slug)
    for name in archive.namelist()[1:]:
        assert decode(archive.read(name), image_format) == [f"{by_slug[name.rsplit('.', 1)[0]]['short_url']}?qr=1"]
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [row["name"] for row in manifest] == [f"Table {n}" for n in range(1, 51)]  # print order
    first = manifest[0]
    code = next(c for c in codes if c["name"] == "Table 1")
    assert first == {"id": code["id"], "slug": code["slug"], "short_url": code["short_url"], "name": "Table 1",
                     "group": group_id, "folder": "", "tags": "fall24", "file": f"{code['slug']}.{image_format}"}
    if image_format == "png":
        with Image.open(io.BytesIO(archive.read(first["file"]))) as image:
            assert image.size == (295, 295)  # 25 mm at 300 dpi
            assert round(image.info["dpi"][0]) == 300
    assert job["file_name"].endswith(".zip")


async def test_zip_file_names_differ_by_more_than_case(api: httpx.AsyncClient, make_key: KeyFactory,
                                                      worker: JobWorker) -> None:
    key = await make_key()
    made = [await api.post("/v1/qr-codes", headers=bearer(key), json={
        "slug": slug, "destination": {"type": "url", "url": "https://example.com/"}}) for slug in ("Menu", "menu")]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    _, data = await export(api, worker, key, {"format": "zip", "code_ids": [r.json()["id"] for r in made],
                                              "image_format": "svg"})
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    # Unzipped on macOS or Windows (names compared without case), one file would overwrite the other.
    assert len({name.lower() for name in names}) == len(names) == 3, names
    manifest = csv.DictReader(io.StringIO(zipfile.ZipFile(io.BytesIO(data)).read("manifest.csv").decode()))
    assert sorted(row["file"] for row in manifest) == sorted(names[1:])


async def test_codes_csv_lists_the_selection_and_defuses_formulas(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                   worker: JobWorker) -> None:
    key = await make_key()
    made = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "name": "=HYPERLINK(\"x\")", "destination": {"type": "url", "url": "https://example.com/a"}, "tags": ["t"]})
    assert made.status_code == 201
    _, data = await export(api, worker, key, {"format": "codes_csv", "tag": "t"})
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert len(rows) == 1
    assert rows[0]["id"] == made.json()["id"] and rows[0]["url"] == "https://example.com/a"
    assert rows[0]["name"] == "'=HYPERLINK(\"x\")"


async def _scans(db: asyncpg.Connection[Any], code: dict[str, Any], org_id: str, when: datetime,
                 bots: list[bool]) -> None:
    await db.execute("SELECT ensure_scan_partitions($1::date, $1::date)", when.date())
    await db.executemany(
        "INSERT INTO scans (scan_id, scanned_at, code_id, group_id, org_id, livemode, outcome, method, scan_method,"
        " ip_hash, visitor_hash, user_agent, is_bot) VALUES ($1, $2, $3, NULL, $4, true, 'redirected', 'GET',"
        " 'camera', 'iphash-secret', 'visitor', 'ua', $5)",
        [(uuid.uuid4(), when + timedelta(seconds=n), code["id"], org_id, bot) for n, bot in enumerate(bots)])


async def test_scans_csv_has_one_row_per_scan_in_range_bots_flagged_and_no_ip(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/a"}})).json()
    org_id = await db.fetchval("SELECT org_id FROM qr_codes WHERE id = $1", code["id"])
    now = datetime.now(UTC).replace(microsecond=0)
    await _scans(db, code, org_id, now - timedelta(hours=2), [False, True, False])
    await _scans(db, code, org_id, now - timedelta(days=3), [False])  # outside the range
    job, data = await export(api, worker, key, {
        "format": "scans_csv", "code_ids": [code["id"]], "since": (now - timedelta(days=1)).isoformat(),
        "until": now.isoformat()})
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [row["is_bot"] for row in rows] == ["false", "true", "false"]
    assert job["progress"] == {"done": 3, "total": 3}
    assert "ip_hash" not in rows[0] and b"iphash-secret" not in data
    assert {row["code_id"] for row in rows} == {code["id"]}


async def test_scans_csv_since_must_be_before_until_which_is_the_request_time_unless_given(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    now = datetime.now(UTC)
    later = await api.post("/v1/exports", headers=bearer(key), json={
        "format": "scans_csv", "since": (now + timedelta(days=1)).isoformat()})
    assert later.status_code == 422, later.text
    assert [e["field"] for e in later.json()["errors"]] == ["since"]
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0
    earlier = await api.post("/v1/exports", headers=bearer(key), json={
        "format": "scans_csv", "since": (now - timedelta(hours=1)).isoformat()})
    assert earlier.status_code == 202, earlier.text


async def test_a_signed_url_serves_the_file_without_a_key_until_it_expires(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    job, data = await export(api, worker, key, {"format": "pdf_sheet", "group_id": group_id})
    expires = datetime.fromisoformat(job["expires_at"])
    assert expires - datetime.now(UTC) > timedelta(hours=23, minutes=59)
    path = job["signed_url"].split("://", 1)[1].split("/", 1)[1]
    shop = await api.get(f"/{path}")
    assert shop.status_code == 200 and shop.content == data
    assert shop.headers["content-type"] == "application/pdf"
    # A print shop opens the link in a browser: never sniffed, framed, run or cached (docs/exports.md).
    assert shop.headers["x-content-type-options"] == "nosniff"
    assert shop.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'; sandbox"
    assert shop.headers["referrer-policy"] == "no-referrer"
    assert shop.headers["cache-control"] == "private, no-store"
    keyed = await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(key))
    assert keyed.headers["x-content-type-options"] == "nosniff" and keyed.headers["referrer-policy"] == "no-referrer"
    tampered = await api.get(f"/{path}".replace("signature=", "signature=0"))
    assert tampered.status_code == 403
    not_ascii = await api.get(f"/{path}".replace("signature=", "signature=%C3%A9"))
    assert not_ascii.status_code == 403 and not_ascii.json()["type"].endswith("/invalid-signature")
    assert (await api.get(f"/v1/exports/{job['id']}/file")).status_code == 401
    other = await make_key("globex")
    assert (await api.get(f"/v1/exports/{job['id']}", headers=bearer(other))).status_code == 404

    await db.execute("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = $1", job["id"])
    assert await worker.remove_expired() == 1
    assert (await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(key))).status_code == 410
    assert await db.fetchval("SELECT count(*) FROM job_file_chunks WHERE job_id = $1", job["id"]) == 0


async def test_a_file_past_its_expiry_is_gone_before_the_worker_deletes_it(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 2)
    job, _ = await export(api, worker, key, {"format": "codes_csv", "group_id": group_id})
    await db.execute("UPDATE jobs SET expires_at = now() - interval '1 second' WHERE id = $1", job["id"])
    # The worker's sweep has not come yet: the file is still stored, and not served.
    assert await db.fetchval("SELECT file_size FROM jobs WHERE id = $1", job["id"]) is not None
    gone = await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(key))
    assert gone.status_code == 410 and gone.json()["type"].endswith("/export-expired"), gone.text


async def test_exports_announce_success_and_failure_as_events(api: httpx.AsyncClient, make_key: KeyFactory,
                                                              worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key(scopes=("qr:read", "qr:write", "webhooks:read"))
    group_id, codes = await mint_group(api, key, 2)
    job, _ = await export(api, worker, key, {"format": "zip", "group_id": group_id, "image_format": "svg"})
    events = (await api.get("/v1/events?type=export.succeeded", headers=bearer(key))).json()["data"]
    assert [e["data"]["object"]["id"] for e in events] == [job["id"]]
    assert events[0]["data"]["object"]["status"] == "succeeded"

    started = await api.post("/v1/exports", headers=bearer(key), json={
        "format": "zip", "group_id": group_id, "image_format": "png"})
    await db.execute("UPDATE jobs SET request = request || '{\"dpi\": 1}' WHERE id = $1", started.json()["id"])
    failed = await run_job(api, worker, key, f"/v1/exports/{started.json()['id']}")
    assert failed["status"] == "failed" and failed["error"]["status"] >= 400 and failed["file_url"] is None
    events = (await api.get("/v1/events?type=export.failed", headers=bearer(key))).json()["data"]
    assert [e["data"]["object"]["id"] for e in events] == [failed["id"]]


async def test_a_webhooks_read_key_cannot_download_an_export_file(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    """A key given only `webhooks:read` (a monitoring tool reading /v1/events) may not read export files: they
    are for `qr:read` (docs/exports.md). `export.*` events carry the export object without its `signed_url`,
    a link that needs no key; a `qr:read` key reads the export for a fresh one."""
    owner = await make_key(scopes=("qr:read", "qr:write", "webhooks:read"))
    monitor = await make_key(scopes=("webhooks:read",))
    group_id, _ = await mint_group(api, owner, 2)
    job, data = await export(api, worker, owner, {"format": "codes_csv", "group_id": group_id})
    assert (await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(monitor))).status_code == 403
    assert (await api.get(f"/v1/exports/{job['id']}", headers=bearer(monitor))).status_code == 403

    events = (await api.get("/v1/events", headers=bearer(monitor), params={"type": "export.succeeded"})).json()
    [event] = events["data"]
    announced = event["data"]["object"]
    assert announced["id"] == job["id"] and announced["status"] == "succeeded"
    assert "signed_url" not in announced, announced
    assert not any(isinstance(v, str) and "signature=" in v for v in announced.values()), announced
    assert announced["file_url"] == job["file_url"]  # needs a key with qr:read
    assert (await api.get(f"/v1/events/{event['id']}", headers=bearer(monitor))).json() == event
    # The receiver with a qr:read key gets the link from the export itself.
    fresh = (await api.get(f"/v1/exports/{job['id']}", headers=bearer(owner))).json()["signed_url"]
    shop = await api.get("/" + fresh.split("://", 1)[1].split("/", 1)[1])
    assert shop.status_code == 200 and shop.content == data


async def test_export_events_recorded_before_lose_their_signed_url_on_migration(
        db: asyncpg.Connection[Any], make_key: KeyFactory) -> None:
    """Events stored by an older version still held the link: migration 0021 takes it out of them (and only it),
    so neither `GET /v1/events` nor a pending delivery hands it out after the upgrade."""
    await make_key()
    org_id = await db.fetchval("SELECT id FROM organisations LIMIT 1")
    old = {"id": "exp_old", "object": "export", "status": "succeeded", "file_url": "https://cp/v1/exports/exp_old/file",
           "signed_url": "https://cp/v1/exports/exp_old/file?expires=1&signature=ab"}
    await db.execute("INSERT INTO events (id, org_id, livemode, type, data) VALUES"
                     " ('evt_old', $1, true, 'export.succeeded', jsonb_build_object('object', $2::text::jsonb)),"
                     " ('evt_qr', $1, true, 'qr.updated', jsonb_build_object('object', $2::text::jsonb))",
                     org_id, orjson.dumps(old).decode())
    [sql] = [sql for version, sql in migration_files() if version.startswith("0022_export_events")]
    await db.execute(sql)
    rows = dict(await db.fetch("SELECT id, data::text FROM events WHERE id IN ('evt_old', 'evt_qr')"))
    assert orjson.loads(rows["evt_old"]) == {"object": {k: v for k, v in old.items() if k != "signed_url"}}
    assert orjson.loads(rows["evt_qr"]) == {"object": old}  # not an export event: untouched


async def test_a_job_whose_worker_died_is_taken_over_and_finished(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    first = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    second = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    # Two workers claiming at once get different jobs (SKIP LOCKED), never the same one.
    async with db.transaction():
        await db.execute("SELECT id FROM jobs WHERE id = $1 FOR UPDATE", first.json()["id"])
        claimed = await worker.db.fetchrow("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at"
                                           " LIMIT 1 FOR UPDATE SKIP LOCKED")
        assert claimed is not None and claimed["id"] == second.json()["id"]
    # A worker claimed the first job and died: no heartbeat since long before the lease.
    await db.execute("UPDATE jobs SET status = 'running', attempt = 1, heartbeat_at = now() - interval '1 hour'"
                     " WHERE id = $1", first.json()["id"])
    done = await run_job(api, worker, key, f"/v1/exports/{first.json()['id']}")
    assert done["status"] == "succeeded"
    assert await db.fetchval("SELECT attempt FROM jobs WHERE id = $1", first.json()["id"]) == 2
    file = await api.get(f"/v1/exports/{done['id']}/file", headers=bearer(key))
    assert len(list(csv.DictReader(io.StringIO(file.text)))) == 3


async def test_a_request_that_cannot_be_served_is_refused_before_any_job(api: httpx.AsyncClient,
                                                                          make_key: KeyFactory) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 1)
    for body in ({"format": "zip", "group_id": group_id},
                 {"format": "pdf_sheet"},
                 {"format": "pdf_sheet", "group_id": group_id, "code_ids": ["qr_x"]},
                 {"format": "pdf_sheet", "group_id": group_id, "sheet": {"template": "avery-5160", "paper": "a4"}},
                 {"format": "pdf_sheet", "group_id": group_id, "sheet": {"template": "grid"}},
                 {"format": "pdf_sheet", "code_ids": ["qr_nope"]}):
        response = await api.post("/v1/exports", headers=bearer(key), json=body)
        assert response.status_code == 422, (body, response.text)
    assert (await api.post("/v1/exports", headers=bearer(key), json={
        "format": "pdf_sheet", "group_id": "grp_nope"})).status_code == 404
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0


@pytest.mark.parametrize(("preset", "dpi", "smallest_mm"), [("default", 72, 26.2), ("dots", 120, 15.7)])
async def test_a_png_under_2_px_a_module_is_refused_before_any_job(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, preset: str, dpi: int,
        smallest_mm: float) -> None:
    """14.8 mm is the smallest size the print check names for 37 modules; at 72 or 120 dpi that is a 42 or 70 px
    PNG, 1.1 or 1.9 px a module, which did not decode once in 20 codes."""
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "slug": "menu-table", "destination": {"type": "url", "url": "https://example.com/menu"},
        "design": {"style_preset": preset}})).json()
    body = {"format": "zip", "code_ids": [code["id"]], "image_format": "png", "size_mm": 14.8, "dpi": dpi}
    refused = await api.post("/v1/exports", headers=bearer(key), json=body)
    assert refused.status_code == 422 and refused.json()["type"].endswith("/unscannable-design"), refused.text
    assert refused.json()["errors"] == [{"field": "size_mm", "message": f"at {dpi} dpi, at least {smallest_mm} mm"},
                                        {"field": "dpi", "message": "at 14.8 mm, at least 127"}]
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0
    if preset == "default":
        _, data = await export(api, worker, key, {**body, "size_mm": smallest_mm})
        assert decode(zipfile.ZipFile(io.BytesIO(data)).read("menu-table.png"), "png") == [
            code["short_url"] + "?qr=1"]


async def test_a_png_over_8000_pixels_a_side_is_refused_on_size_mm_before_any_job(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 2)
    # The schema's own maxima: 23,622 pixels a side, gigabytes per image while it is drawn.
    huge = {"format": "zip", "group_id": group_id, "image_format": "png", "size_mm": 500, "dpi": 1200}
    response = await api.post("/v1/exports", headers=bearer(key), json=huge)
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "size_mm", "message": "a png is at most 8000 pixels a side:"
                                          " at 1200 dpi, at most 169.3 mm (or lower the dpi)"}]
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0
    schema = (await api.get("/openapi.json")).json()["components"]["schemas"]["ExportCreate"]
    assert "at most 8000 pixels a side" in schema["properties"]["size_mm"]["description"]

    # A job queued before the check existed fails with the same problem instead of drawing.
    started = await api.post("/v1/exports", headers=bearer(key), json={**huge, "image_format": "svg"})
    assert started.status_code == 202, started.text
    await db.execute("UPDATE jobs SET request = request || '{\"image_format\": \"png\"}' WHERE id = $1",
                     started.json()["id"])
    failed = await run_job(api, worker, key, f"/v1/exports/{started.json()['id']}")
    assert failed["status"] == "failed" and failed["error"]["errors"][0]["field"] == "size_mm", failed

    # The size the error names is accepted (not run here: 7,998 pixels a side takes seconds to draw).
    largest = await api.post("/v1/exports", headers=bearer(key), json={**huge, "size_mm": 169.3})
    assert largest.status_code == 202, largest.text


async def test_files_can_live_in_a_directory_every_process_shares(
        cp_settings: ControlPlaneSettings, make_key: KeyFactory, redis: aioredis.Redis, db: asyncpg.Connection[Any],
        tmp_path: Path) -> None:
    settings = replace(cp_settings, export_dir=tmp_path)
    app = create_app(settings)
    pool = await create_pool(settings.stores.database_url, min_size=1, max_size=2)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as api:
            worker = await start_worker(JobSettings(control_plane=settings), pool, redis)
            key = await make_key()
            group_id, _ = await mint_group(api, key, 3)
            job, data = await export(api, worker, key, {"format": "codes_csv", "group_id": group_id})
    finally:
        await pool.close()
    assert [p.name for p in tmp_path.iterdir()] == [f"{job['id']}.1.export"]
    assert (tmp_path / f"{job['id']}.1.export").read_bytes() == data
    assert await db.fetchval("SELECT count(*) FROM job_file_chunks") == 0


async def test_a_page_of_exports_costs_memory_in_proportion_to_the_page_not_to_the_requests(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    first = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv"})
    assert first.status_code == 202, first.text
    # 99 more, each asked for by 10,000 code_ids: the request kept with each job is ~280 KB of JSON.
    await db.execute("""
        INSERT INTO jobs (id, kind, org_id, livemode, request, progress_total)
        SELECT 'exp_big' || g, 'export', j.org_id, j.livemode,
               jsonb_build_object('format', 'codes_csv', 'code_ids',
                   (SELECT jsonb_agg('qr_' || lpad(i::text, 20, '0')) FROM generate_series(1, 10000) AS i)), 10000
        FROM jobs j, generate_series(1, 99) AS g WHERE j.id = $1""", first.json()["id"])
    tracemalloc.start()
    try:
        listed = await api.get("/v1/exports", headers=bearer(key), params={"limit": 100})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert listed.status_code == 200, listed.text
    assert [e["format"] for e in listed.json()["data"]] == ["codes_csv"] * 100
    assert peak < 20e6, f"listing 100 exports held {peak / 1e6:.0f} MB"  # 84 MB when whole rows were read


async def test_an_ended_export_keeps_no_list_of_its_codes(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    succeeded, _ = await export(api, worker, key, {"format": "codes_csv", "group_id": group_id})
    assert await db.fetchval("SELECT count(*) FROM job_codes WHERE job_id = $1", succeeded["id"]) == 0
    failing = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    await db.execute("UPDATE jobs SET attempt = 3 WHERE id = $1", failing.json()["id"])  # its last attempt is next
    failed = await run_job(api, worker, key, f"/v1/exports/{failing.json()['id']}")
    assert failed["status"] == "failed"
    assert await db.fetchval("SELECT count(*) FROM job_codes") == 0
    # Jobs that ended before the worker deleted their lists lose them to migration 0019.
    queued = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    await db.execute("INSERT INTO job_codes SELECT $1, 1, id FROM qr_codes LIMIT 1", succeeded["id"])
    await db.execute((Path(__file__).parents[3] / "control_plane/migrations/0019_job_codes_of_ended_jobs.sql")
                     .read_text())
    assert [r["job_id"] for r in await db.fetch("SELECT DISTINCT job_id FROM job_codes")] == [queued.json()["id"]]


async def test_a_folder_of_another_org_or_none_at_all_is_a_404_like_a_group(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    theirs = await make_key("globex")
    folder = await api.post("/v1/folders", headers=bearer(theirs), json={"name": "secret"})
    group = await api.post("/v1/qr-groups", headers=bearer(theirs), json={"name": "g"})
    assert folder.status_code == group.status_code == 201, (folder.text, group.text)
    mine = await make_key()
    for selection in ({"group_id": group.json()["id"]}, {"folder_id": folder.json()["id"]},
                      {"folder_id": "fld_doesnotexist0000000"}):
        response = await api.post("/v1/exports", headers=bearer(mine), json={"format": "pdf_sheet", **selection})
        assert response.status_code == 404, (selection, response.text)
    assert (await api.get("/v1/exports", headers=bearer(mine))).json()["total"] == 0


async def test_a_label_sheet_or_zip_of_no_code_is_refused_on_the_selection(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    key = await make_key()
    for body in ({"format": "zip", "tag": "no-such-tag", "image_format": "svg"},
                 {"format": "pdf_sheet", "tag": "no-such-tag"}):
        response = await api.post("/v1/exports", headers=bearer(key), json=body)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["selection"]
    # Every code deleted after the request: the zip still opens with its manifest (and lists no code).
    group_id, codes = await mint_group(api, key, 1)
    started = await api.post("/v1/exports", headers=bearer(key),
                             json={"format": "zip", "group_id": group_id, "image_format": "svg"})
    assert (await api.delete(f"/v1/qr-codes/{codes[0]['id']}", headers=bearer(key))).status_code in (200, 204)
    job = await run_job(api, worker, key, f"/v1/exports/{started.json()['id']}")
    file = await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(key))
    archive = zipfile.ZipFile(io.BytesIO(file.content))
    assert archive.namelist() == ["manifest.csv"]
    assert archive.read("manifest.csv").decode() == "id,slug,short_url,name,group,folder,tags,file\r\n"


async def test_a_scans_csv_range_out_of_bounds_is_refused_on_its_field(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    for body, field in (({"until": "0001-01-05T00:00:00Z"}, "until"),
                        ({"since": "0001-01-05T00:00:00Z"}, "since"),
                        ({"until": "9999-12-31T00:00:00Z"}, "until")):
        response = await api.post("/v1/exports", headers=bearer(key), json={"format": "scans_csv", **body})
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0


async def test_since_not_before_until_is_refused_on_since_when_both_are_given(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    response = await api.post("/v1/exports", headers=bearer(key), json={
        "format": "scans_csv", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"})
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": "since", "message": "must be before until"}]


async def test_a_code_deleted_while_a_zip_is_drawn_keeps_its_manifest_row_and_its_file(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    key = await make_key()
    group_id, codes = await mint_group(api, key, 3)
    real_batches = exporting.code_batches
    passes: list[int] = []

    async def deleting_between_the_passes(db: Any, job_id: str, **options: Any) -> Any:
        passes.append(1)
        if len(passes) == 2:  # the manifest is written; someone deletes a code before its image is drawn
            deleted = await api.delete(f"/v1/qr-codes/{codes[1]['id']}", headers=bearer(key))
            assert deleted.status_code in (200, 204), deleted.text
        async for batch in real_batches(db, job_id, **options):
            yield batch

    monkeypatch.setattr(exporting, "code_batches", deleting_between_the_passes)
    _, data = await export(api, worker, key, {"format": "zip", "group_id": group_id, "image_format": "svg"})
    assert len(passes) == 2
    archive = zipfile.ZipFile(io.BytesIO(data))
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert [row["id"] for row in manifest] == [code["id"] for code in codes]
    assert archive.namelist() == ["manifest.csv", *(row["file"] for row in manifest)]


async def test_codes_imported_together_are_exported_in_the_natural_order_of_their_names(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    key = await make_key()
    rows = "".join(f"{name},https://example.com/{n}\r\n" for n, name in enumerate(
        ["Zoo", "apple pie", "Bar 10", "Bar 9", "Bar 9b", "Table 2", "Table 10"]))
    started = await api.post("/v1/imports", headers={**bearer(key), "Content-Type": "text/csv"},
                             content=f"name,url\r\n{rows}")
    assert started.status_code == 202, started.text
    assert (await run_job(api, worker, key, f"/v1/imports/{started.json()['id']}"))["status"] == "succeeded"
    _, data = await export(api, worker, key, {"format": "codes_csv"})
    names = [row["name"] for row in csv.DictReader(io.StringIO(data.decode()))]
    assert names == ["apple pie", "Bar 9", "Bar 9b", "Bar 10", "Table 2", "Table 10", "Zoo"]


async def test_a_groups_scans_csv_holds_the_scans_its_analytics_count(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, (moved_out, _) = await mint_group(api, key, 2)
    moved_in = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/a"}})).json()
    org_id = await db.fetchval("SELECT org_id FROM qr_codes WHERE id = $1", moved_in["id"])
    now = datetime.now(UTC).replace(microsecond=0)
    await db.execute("SELECT ensure_scan_partitions($1::date, $2::date)", (now - timedelta(hours=3)).date(), now.date())
    await db.executemany(
        "INSERT INTO scans (scan_id, scanned_at, code_id, group_id, org_id, livemode, outcome, method, scan_method,"
        " ip_hash, visitor_hash, user_agent, is_bot) VALUES ($1, $2, $3, $4, $5, true, 'redirected', 'GET',"
        " 'camera', 'ip', 'visitor', 'ua', false)",
        [(uuid.uuid4(), now - timedelta(hours=3, seconds=n), code_id, group, org_id)
         for n, (code_id, group) in enumerate([(moved_out["id"], group_id)] * 3 + [(moved_in["id"], None)] * 2)])
    # One code leaves the group with its 3 scans made there; another joins it, without the 2 made before.
    for code_id, group in ((moved_out["id"], None), (moved_in["id"], group_id)):
        moved = await api.patch(f"/v1/qr-codes/{code_id}", headers=bearer(key), json={"group_id": group})
        assert moved.status_code == 200, moved.text
    window = {"since": (now - timedelta(days=1)).isoformat(), "until": now.isoformat()}
    analytics = await api.get(f"/v1/qr-groups/{group_id}/scans", headers=bearer(key), params=window)
    assert analytics.json()["totals"]["total_scans"] == 3
    _, data = await export(api, worker, key, {"format": "scans_csv", "group_id": group_id, **window})
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(row["code_id"], row["group_id"]) for row in rows] == [(moved_out["id"], group_id)] * 3


async def test_a_zip_of_pngs_that_would_not_read_is_refused_naming_a_size_that_does(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    """15.7 mm at 120 dpi is a 74 px PNG: 2 px a module for these codes' 37 modules, the floor, and a `dots`
    design does not decode there. Every image of the zip the 422 leads to reads."""
    key = await make_key()
    group_id = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "tables"})).json()["id"]
    codes = [(await api.post("/v1/qr-codes", headers=bearer(key), json={
        "slug": f"table-{n}", "group_id": group_id, "destination": {"type": "url", "url": "https://example.com/"},
        "design": {"style_preset": "dots"}})).json() for n in range(10, 13)]
    body = {"format": "zip", "group_id": group_id, "image_format": "png", "size_mm": 15.7, "dpi": 120}
    for _ in range(2):  # the second answer comes from the verdict cached in Redis
        refused = await api.post("/v1/exports", headers=bearer(key), json=body)
        assert refused.status_code == 422 and refused.json()["type"].endswith("/unscannable-design"), refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == "size_mm", error
    assert (await api.get("/v1/exports", headers=bearer(key))).json()["total"] == 0
    reads_at = float(error["message"].removeprefix("at 120 dpi, ").removesuffix(" mm reads"))
    _, data = await export(api, worker, key, {**body, "size_mm": reads_at})
    archive = zipfile.ZipFile(io.BytesIO(data))
    for code in codes:
        assert decode(archive.read(f"{code['slug']}.png"), "png") == [code["short_url"] + "?qr=1"]


async def test_a_zip_png_that_does_not_read_fails_the_job_naming_the_code_and_a_size_that_reads(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker) -> None:
    """The request decodes one code per design and symbol size; the data modules differ with the payload, so
    another code of the class may not read (two `dots` codes of 37 modules at 92 px, 2.5 px a module: the first
    reads, the second does not). The job decodes every PNG: it fails naming that code, never a zip with an
    image that does not scan."""
    key = await make_key(scopes=("qr:read", "qr:write", "webhooks:read"))
    good, bad = [(await api.post("/v1/qr-codes", headers=bearer(key), json={
        "slug": slug, "destination": {"type": "url", "url": "https://example.com/"},
        "design": {"style_preset": "dots"}})).json() for slug in ("3eiw8uo9b4kfe", "lfxctncsbpcdp")]
    dots = parse_design(good["design"])
    for code, reads in ((good, True), (bad, False)):  # what a download of each at 92 px finds
        payload = code["short_url"] + "?qr=1"
        assert decodes_to(render_raster(payload, dots, 92), payload, dots.colors.background) is reads
    body = {"format": "zip", "code_ids": [good["id"], bad["id"]], "image_format": "png", "size_mm": 14.9, "dpi": 157}
    started = await api.post("/v1/exports", headers=bearer(key), json=body)
    assert started.status_code == 202, started.text  # the request's check decodes `good` only

    failed = await run_job(api, worker, key, f"/v1/exports/{started.json()['id']}")
    assert failed["status"] == "failed" and failed["file_url"] is None, failed
    error = failed["error"]
    assert error["status"] == 422 and error["type"].endswith("/unscannable-design"), error
    assert bad["id"] in error["detail"] and good["id"] not in error["detail"], error
    [named] = error["errors"]
    assert named["field"] == "size_mm" and named["message"].startswith(f"{bad['id']}: at 157 dpi, "), named
    events = (await api.get("/v1/events?type=export.failed", headers=bearer(key))).json()["data"]
    assert [e["data"]["object"]["error"] for e in events] == [error]
    # The size it names reads, for that code, in the zip the job then makes.
    reads_at = float(named["message"].removeprefix(f"{bad['id']}: at 157 dpi, ").removesuffix(" mm reads"))
    _, data = await export(api, worker, key, {**body, "code_ids": [bad["id"]], "size_mm": reads_at})
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert decode(archive.read(f"{bad['slug']}.png"), "png") == [bad["short_url"] + "?qr=1"]
