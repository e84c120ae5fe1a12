"""`POST /v1/exports` decodes a zip's PNGs with no transaction open: many exports decoding at once hold no
pooled connection in a transaction, nor its locks, for the length of the decodes."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import asyncpg
import httpx
import pytest

from control_plane.render import images
from tests.conftest import KeyFactory, bearer
from tests.control_plane.render.logos import logo_png

BOUND = 30.0  # seconds; a bound on a wait, not a measurement
IDLE_IN_TRANSACTION = ("SELECT count(*) FROM pg_stat_activity"
                       " WHERE state = 'idle in transaction' AND datname = current_database()")


async def test_no_transaction_is_open_while_an_export_request_decodes_its_pngs(
        api: httpx.AsyncClient, make_key: KeyFactory, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each decode the request runs counts, from another connection, the backends idle in a transaction: none.
    The answers are those of before: 202 for a zip that reads, 422 on size_mm naming a size that reads."""
    loop = asyncio.get_running_loop()
    watcher = await asyncpg.connect(database_url, timeout=10)
    seen: list[int] = []
    decode = images._readable

    def watched(*args: Any) -> int:  # runs in a worker thread while the request awaits it
        seen.append(asyncio.run_coroutine_threadsafe(watcher.fetchval(IDLE_IN_TRANSACTION), loop).result(BOUND))
        return decode(*args)

    monkeypatch.setattr(images, "_readable", watched)
    try:
        key = await make_key()
        logo = "data:image/png;base64," + base64.b64encode(logo_png()).decode()
        plain = (await api.post("/v1/qr-codes", headers=bearer(key), json={
            "destination": {"type": "url", "url": "https://example.com/a"}})).json()
        with_logo = (await api.post("/v1/qr-codes", headers=bearer(key), json={
            "destination": {"type": "url", "url": "https://example.com/b"},
            "design": {"logo": {"url": logo, "scale": 0.2}}})).json()
        seen.clear()  # the decodes of the designs' saves (check_design) are not the export's
        queued = await api.post("/v1/exports", headers=bearer(key), json={
            "format": "zip", "code_ids": [plain["id"], with_logo["id"]], "image_format": "png",
            "size_mm": 25, "dpi": 300})
        assert queued.status_code == 202, queued.text
        assert len(seen) == 2 and seen == [0, 0], seen

        dots = (await api.post("/v1/qr-codes", headers=bearer(key), json={
            "slug": "table-10", "destination": {"type": "url", "url": "https://example.com/"},
            "design": {"style_preset": "dots"}})).json()
        seen.clear()
        refused = await api.post("/v1/exports", headers=bearer(key), json={
            "format": "zip", "code_ids": [dots["id"]], "image_format": "png", "size_mm": 15.7, "dpi": 120})
        assert refused.status_code == 422 and refused.json()["type"].endswith("/unscannable-design"), refused.text
        assert [error["field"] for error in refused.json()["errors"]] == ["size_mm"]
        assert seen and set(seen) == {0}, seen
    finally:
        await watcher.close()
