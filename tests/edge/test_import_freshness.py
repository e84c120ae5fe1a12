"""An import job reads `succeeded` only once every edge answers its codes (docs/freshness.md: "a code created,
minted or imported is scanned 302 right after the 2xx"; for a job, the 2xx a client acts on is `succeeded`)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from control_plane.jobs.worker import JobWorker, start_worker
from shared.settings import ControlPlaneSettings, JobSettings
from tests.conftest import KeyFactory, bearer
from tests.edge.test_code_filter import HOST, Running, running  # noqa: F401  (fixture)


def _csv(slugs: list[str]) -> bytes:
    return b"name,url,slug\n" + b"".join(b"Imported %d,https://example.com/t/%d,%s\n" % (n, n, s.encode())
                                         for n, s in enumerate(slugs))


async def _import(running: Running, key: str, slugs: list[str]) -> str:  # noqa: F811
    started = await running.api.post("/v1/imports", headers={**bearer(key), "Content-Type": "text/csv"},
                                     content=_csv(slugs))
    assert started.status_code == 202, started.text
    return str(started.json()["id"])


async def _status(running: Running, key: str, job_id: str) -> dict[str, Any]:  # noqa: F811
    return dict((await running.api.get(f"/v1/imports/{job_id}", headers=bearer(key))).json())


async def _worker(running: Running, cp_settings: ControlPlaneSettings) -> JobWorker:  # noqa: F811
    return await start_worker(JobSettings(control_plane=cp_settings, poll_interval=0.05, lease=60.0), running.db,
                              running.redis)


async def test_an_import_is_running_until_the_edges_answer_its_codes(
        running: Running, make_key: KeyFactory, cp_settings: ControlPlaneSettings) -> None:  # noqa: F811
    key, worker = await make_key(), await _worker(running, cp_settings)
    # The write-through of a big import takes a while (slices of 500, each waiting for every edge): held
    # here, so that the window a polling client could observe is certain to be open.
    gate, committed = asyncio.Event(), asyncio.Event()
    publish = worker.cache.publish_codes

    async def held_publish(db, code_ids):  # type: ignore[no-untyped-def]
        committed.set()
        await gate.wait()
        await publish(db, code_ids)

    worker.cache.publish_codes = held_publish  # type: ignore[method-assign]
    slugs = [f"imp{secrets.token_hex(4)}{n}" for n in range(20)]
    job_id = await _import(running, key, slugs)
    work = asyncio.create_task(worker.run_once())
    try:
        await asyncio.wait_for(committed.wait(), 30)
        for _ in range(20):  # the codes are committed; the job must not end while the edges lack them
            job = await _status(running, key, job_id)
            assert job["status"] == "running" and job["result"] is None, job
            await asyncio.sleep(0.01)
        gate.set()
        await asyncio.wait_for(work, 30)
        job = await _status(running, key, job_id)
        assert (job["status"], job["result"]) == ("succeeded", {"created": 20, "errors": []}), job
        statuses = [[(await edge.get(f"/{s}", headers=HOST)).status_code for s in slugs[:3]]
                    for _, edge in running.both]
        assert statuses == [[302] * 3, [302] * 3], statuses
    finally:
        gate.set()
        await asyncio.wait_for(work, 30)


async def test_a_stopped_import_publishes_its_committed_codes_when_taken_again(
        running: Running, make_key: KeyFactory, cp_settings: ControlPlaneSettings) -> None:  # noqa: F811
    """A worker stopped between the commit and the write-through leaves the job `running`; the next attempt
    writes the codes through and ends it, without importing the file twice."""
    key, worker = await make_key(), await _worker(running, cp_settings)
    publish = worker.cache.publish_codes
    committed = asyncio.Event()

    async def never_publish(db, code_ids):  # type: ignore[no-untyped-def]
        committed.set()
        await asyncio.Event().wait()

    worker.cache.publish_codes = never_publish  # type: ignore[method-assign]
    slugs = [f"imp{secrets.token_hex(4)}{n}" for n in range(5)]
    job_id = await _import(running, key, slugs)
    stop = asyncio.Event()
    serving = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(committed.wait(), 30)
    stop.set()  # SIGTERM: the job goes back to the queue
    await asyncio.wait_for(serving, 30)
    assert (await _status(running, key, job_id))["status"] in ("queued", "running")
    worker.cache.publish_codes = publish  # type: ignore[method-assign]
    assert await asyncio.wait_for(worker.run_once(), 30)
    job = await _status(running, key, job_id)
    assert (job["status"], job["result"]) == ("succeeded", {"created": 5, "errors": []}), job
    listed = (await running.api.get("/v1/qr-codes?q=Imported&limit=100", headers=bearer(key))).json()["data"]
    assert len(listed) == 5
    statuses = [(await edge.get(f"/{slugs[-1]}", headers=HOST)).status_code for _, edge in running.both]
    assert statuses == [302, 302], statuses
