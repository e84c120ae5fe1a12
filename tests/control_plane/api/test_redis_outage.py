"""While Redis is down or paused, /v1 requests go on at their usual pace: the rate limiter lets them through
without waiting on Redis each time, logs the outage once, and limits again once Redis is back (docs/api.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from control_plane.api.app import create_app
from control_plane.api.request_redis import OPEN_FOR
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer
from tests.edge.private_redis import PrivateRedis


@pytest.fixture
async def api(env: dict[str, str], private_redis: PrivateRedis) -> AsyncIterator[httpx.AsyncClient]:
    """The control plane on a Redis of the test's own, which it may stop or pause."""
    app = create_app(ControlPlaneSettings.from_env({**env, "REDIS_URL": private_redis.url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
            yield client


async def test_a_redis_outage_does_not_add_latency_to_every_api_request(
        api: httpx.AsyncClient, private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    await asyncio.to_thread(private_redis.stop)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(20):
        assert (await api.get("/v1/qr-codes", headers=bearer(key))).status_code == 200
    # A bound, not a measurement: each request asked the stopped Redis twice with three attempts (~0.6 s each,
    # 12 s for these 20); with the circuit open only the first asks, within its 0.2 s budget.
    took = loop.time() - started
    assert took < 6, f"20 API requests took {took:.1f} s while Redis was stopped"


async def test_a_paused_redis_does_not_stall_api_requests(
        api: httpx.AsyncClient, private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    """Redis that does not answer at all (paused, a network partition, a failover in progress)."""
    key = await make_key()
    assert (await api.get("/v1/qr-codes", headers=bearer(key))).status_code == 200
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        listed = [(await api.get("/v1/qr-codes", headers=bearer(key))).status_code for _ in range(5)]
        posted = await api.post("/v1/qr-codes", headers={**bearer(key), "Idempotency-Key": "k1"},
                                json={"destination": {"type": "url", "url": "https://example.com/"}})
        took = loop.time() - started
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    assert listed == [200] * 5
    assert posted.status_code == 503 and posted.headers["retry-after"] == "1"
    # A bound, not a measurement: each request used to wait out the paused Redis (61.6 s for one).
    assert took < 10, f"6 API requests took {took:.1f} s while Redis was paused"


async def test_a_redis_outage_is_logged_once_and_its_end_once(
        api: httpx.AsyncClient, private_redis: PrivateRedis, make_key: KeyFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    key = await make_key()
    await asyncio.to_thread(private_redis.stop)
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            assert (await api.get("/v1/qr-codes", headers=bearer(key))).status_code == 200
        await asyncio.to_thread(private_redis.start)
        await asyncio.sleep(OPEN_FOR)
        back = await api.get("/v1/qr-codes", headers=bearer(key))
    assert "ratelimit-remaining" in back.headers
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "rate limiter unavailable" in m]) == 1, messages
    assert len([m for m in messages if "available again" in m]) == 1, messages
