"""Attempts of one job: a stalled attempt never harms the one that took over from it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

import control_plane.jobs.worker as worker_module
from control_plane.jobs import claims
from control_plane.jobs.exporting import ExportRun
from control_plane.jobs.worker import JobWorker
from tests.conftest import KeyFactory, bearer
from tests.control_plane.jobs.conftest import mint_group


async def test_a_stalled_attempt_that_fails_leaves_the_file_of_the_attempt_that_finished(
        api: httpx.AsyncClient, make_key: KeyFactory, worker: JobWorker, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    resume = asyncio.Event()

    class StallingRun(ExportRun):
        async def run(self) -> tuple[str, str]:
            if self.job["attempt"] == 1:  # stalls past its lease, comes back after the takeover, then errs
                await resume.wait()
                raise RuntimeError("the renderer broke")
            return await super().run()

    monkeypatch.setattr(worker_module, "ExportRun", StallingRun)
    key = await make_key()
    group_id, _ = await mint_group(api, key, 3)
    started = await api.post("/v1/exports", headers=bearer(key), json={"format": "codes_csv", "group_id": group_id})
    export_id = started.json()["id"]
    stalled = await claims.claim(worker.db, 60)
    assert stalled is not None and stalled["attempt"] == 1
    first = asyncio.create_task(worker._process(stalled))
    await asyncio.sleep(0.1)
    await db.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", export_id)
    assert await worker.run_once()  # attempt 2 takes the job over and finishes it
    assert (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()["status"] == "succeeded"
    file = await api.get(f"/v1/exports/{export_id}/file", headers=bearer(key))
    assert file.status_code == 200 and file.text.count("\r\n") == 4

    resume.set()
    await first  # attempt 1 fails, but the job is no longer its to end
    # An attempt that stalled before it even opened its file, opening it now.
    await worker.files.sink(export_id, 1)
    assert (await api.get(f"/v1/exports/{export_id}", headers=bearer(key))).json()["status"] == "succeeded"
    again = await api.get(f"/v1/exports/{export_id}/file", headers=bearer(key))
    assert again.status_code == 200 and again.content == file.content
