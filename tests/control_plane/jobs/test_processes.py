"""The real `scanroute jobs` worker and the `scanroute export` / `scanroute import` commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pypdfium2 as pdfium
import pytest

from shared.processes import spawn, stop
from tests.conftest import ROOT, KeyFactory, bearer
from tests.control_plane.jobs.conftest import mint_group

pytestmark = pytest.mark.e2e


def scanroute(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


async def test_the_worker_process_finishes_queued_exports_and_stops_cleanly_on_sigterm(
        api: httpx.AsyncClient, make_key: KeyFactory, env: dict[str, str], db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group_id, _ = await mint_group(api, key, 30)
    started = await api.post("/v1/exports", headers=bearer(key), json={"format": "pdf_sheet", "group_id": group_id})
    worker = spawn([sys.executable, "-m", "control_plane.cli", "jobs"],
                   env={**os.environ, **env, "JOBS_POLL_INTERVAL": "0.05"})
    try:
        deadline = time.monotonic() + 60
        while (await api.get(f"/v1/exports/{started.json()['id']}", headers=bearer(key))).json()["status"] \
                != "succeeded":
            assert worker.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        assert stop(worker, signal.SIGTERM) == 0


async def test_export_and_import_commands_for_scripts(api: httpx.AsyncClient, make_key: KeyFactory,
                                                      env: dict[str, str], tmp_path: Path) -> None:
    key = await make_key("acme")
    group_id, _ = await mint_group(api, key, 4)
    out = tmp_path / "sheet.pdf"
    done = scanroute(env, "export", "--org", "acme", "--format", "pdf_sheet", "--group-id", group_id,
                     "--template", "avery-5160", "--crop-marks", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert len(pdfium.PdfDocument(out.read_bytes())) == 1

    campaign = tmp_path / "campaign.csv"
    campaign.write_text("name,url\nA,https://example.com/a\nB,not a url\n")
    failed = scanroute(env, "import", str(campaign), "--org", "acme")
    assert failed.returncode == 1
    assert [e["row"] for e in json.loads(failed.stdout)["result"]["errors"]] == [3]
    campaign.write_text("name,url\nA,https://example.com/a\nB,https://example.com/b\n")
    created = scanroute(env, "import", str(campaign), "--org", "acme")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["result"] == {"created": 2, "errors": []}
    listed = (await api.get("/v1/qr-codes?standalone=true", headers=bearer(key))).json()
    assert sorted(code["name"] for code in listed["data"]) == ["A", "B"]
