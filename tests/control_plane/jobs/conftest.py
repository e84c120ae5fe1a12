"""A job worker on the test's database and Redis namespace, driven one job at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from control_plane.jobs.worker import JobWorker, start_worker
from shared.database import create_pool
from shared.settings import ControlPlaneSettings, JobSettings
from tests.conftest import bearer


@pytest.fixture
def job_settings(cp_settings: ControlPlaneSettings) -> JobSettings:
    return JobSettings(control_plane=cp_settings, poll_interval=0.05, lease=60.0)


@pytest.fixture
async def worker(job_settings: JobSettings, redis: aioredis.Redis) -> AsyncIterator[JobWorker]:
    db = await create_pool(job_settings.control_plane.stores.database_url, min_size=1, max_size=4)
    try:
        yield await start_worker(job_settings, db, redis)
    finally:
        await db.close()


async def mint_group(api: httpx.AsyncClient, key: str, count: int, **mint: Any) -> tuple[str, list[dict[str, Any]]]:
    group = await api.post("/v1/qr-groups", headers=bearer(key), json={
        "name": "Tables", "destination": {"type": "url", "url": "https://example.com/menu"}})
    assert group.status_code == 201, group.text
    minted = await api.post(f"/v1/qr-groups/{group.json()['id']}/codes", headers=bearer(key),
                            json={"count": count, "name_prefix": "Table ", **mint})
    assert minted.status_code == 201, minted.text
    return str(group.json()["id"]), list(minted.json()["data"])


async def run_job(api: httpx.AsyncClient, worker: JobWorker, key: str, path: str) -> dict[str, Any]:
    """Let the worker take every queued job, then read the job back through the API."""
    while await worker.run_once():
        pass
    response = await api.get(path, headers=bearer(key))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def export(api: httpx.AsyncClient, worker: JobWorker, key: str, body: dict[str, Any]) -> tuple[dict[str, Any],
                                                                                                      bytes]:
    started = await api.post("/v1/exports", headers=bearer(key), json=body)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "queued"
    job = await run_job(api, worker, key, f"/v1/exports/{started.json()['id']}")
    assert job["status"] == "succeeded", job
    file = await api.get(f"/v1/exports/{job['id']}/file", headers=bearer(key))
    assert file.status_code == 200, file.text
    return job, file.content
