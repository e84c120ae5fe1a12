"""The edge as real processes: freshness across workers, and `kill -9` under load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import httpx
import redis.asyncio as aioredis

from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane
from tests.edge.private_redis import PrivateRedis
from tests.edge.running_edge import running_edge
from tests.edge.test_scan import make_code, stream_events

QR_HOST = {"host": "qr.test"}


async def test_scans_right_after_a_patch_never_see_the_old_state_on_any_worker(
        api: httpx.AsyncClient, make_key: KeyFactory, env: dict[str, str]) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://v0.example/"}})).json()
    code = await make_code(api, key, group_id=group["id"])
    fresh_connections = httpx.Limits(max_keepalive_connections=0)  # let the kernel spread them over workers
    stale = []
    with running_edge(env, workers=2) as edge:
        async with httpx.AsyncClient(base_url=edge.url, headers=QR_HOST, limits=fresh_connections) as scans:
            for i in range(1, 201):
                patched = await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                                          json={"destination": {"url": f"https://v{i}.example/"}})
                assert patched.status_code == 200
                for _ in range(2):
                    location = (await scans.get(f"/{code['slug']}")).headers["location"]
                    if location != f"https://v{i}.example/":
                        stale.append((i, location))
    assert stale == []


class Load:
    def __init__(self, client: httpx.AsyncClient, slugs: list[str]) -> None:
        self.client = client
        self.slugs = slugs
        self.answered: list[str] = []  # user agents of scans answered with a 302
        self.answered_by_phase = {"redis up": 0, "redis down": 0}
        self.phase = "redis up"
        self.running = True

    async def run(self, worker: int) -> None:
        n = 0
        while self.running:
            agent = f"probe-{worker}-{n}"
            n += 1
            try:
                response = await self.client.get(f"/{self.slugs[n % len(self.slugs)]}",
                                                  headers={"user-agent": agent})
            except httpx.HTTPError:
                await asyncio.sleep(0.01)  # the edge is gone: keep trying until told to stop
                continue
            if response.status_code == 302:
                self.answered.append(agent)
                self.answered_by_phase[self.phase] += 1


async def test_kill_9_loses_no_scan_that_was_answered(private_env: dict[str, str], private_redis: PrivateRedis,
                                                      make_key: KeyFactory) -> None:
    key = await make_key()
    async with control_plane(private_env) as api:
        codes = [await make_code(api, key, destination={"type": "url", "url": f"https://example.com/{i}"})
                 for i in range(4)]
    with running_edge(private_env) as edge:
        async with httpx.AsyncClient(base_url=edge.url, headers=QR_HOST, timeout=5) as client:
            load = Load(client, [c["slug"] for c in codes])
            workers = [asyncio.create_task(load.run(w)) for w in range(16)]
            await asyncio.sleep(1.0)  # acknowledged by Redis
            await asyncio.to_thread(private_redis.stop)
            load.phase = "redis down"
            await asyncio.sleep(1.0)  # journaled
            edge.process.send_signal(signal.SIGKILL)
            edge.process.wait(10)
            load.running = False
            await asyncio.gather(*workers)
    assert min(load.answered_by_phase.values()) >= 5, load.answered_by_phase  # both paths were exercised
    private_redis.start()
    with running_edge(private_env):  # takes over the dead process's journal and replays it
        redis = aioredis.Redis.from_url(private_redis.url)
        try:
            deadline = time.monotonic() + 20
            while True:
                recorded = Counter(e.user_agent for e in await stream_events(redis, private_env["REDIS_NAMESPACE"]))
                missing = [agent for agent in load.answered if not recorded[agent]]
                if not missing or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        finally:
            await redis.aclose()
    assert missing == [], f"{len(missing)} answered scans were lost"


def worker_pids(parent: int) -> list[int]:
    with open(f"/proc/{parent}/task/{parent}/children") as children:
        return [int(pid) for pid in children.read().split()]


async def test_sigterm_to_a_worker_under_load_fails_no_request(env: dict[str, str], api: httpx.AsyncClient,
                                                               make_key: KeyFactory) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    new_connection_each_time = httpx.Limits(max_keepalive_connections=0)
    statuses: Counter[object] = Counter()
    running = True

    async def scan(client: httpx.AsyncClient) -> None:
        while running:
            try:
                statuses[(await client.get(f"/{code['slug']}")).status_code] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1

    with running_edge(env, workers=2) as edge:
        async with httpx.AsyncClient(base_url=edge.url, headers=QR_HOST, limits=new_connection_each_time,
                                     timeout=10) as client:
            load = [asyncio.create_task(scan(client)) for _ in range(16)]
            await asyncio.sleep(0.5)
            stopped = worker_pids(edge.process.pid)[0]
            os.kill(stopped, signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert stopped not in worker_pids(edge.process.pid)  # drained and gone (the parent replaces it)
            running = False
            await asyncio.gather(*load)
    assert set(statuses) == {302} and statuses[302] > 100, statuses
