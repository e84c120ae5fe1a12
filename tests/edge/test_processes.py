"""The edge as real processes: freshness across workers, and `kill -9` under load."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from shared.processes import spawn, stop
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane
from tests.edge.private_redis import PrivateRedis
from tests.edge.running_edge import running_edge
from tests.edge.test_scan import make_code, stream_events
from tests.ports import free_port
from tests.test_e2e import wait_healthy

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


# Runs the multi-worker edge with os.fork wrapped: the parent logs every worker's pid, and the worker of the
# third fork (the first replacement) is sent SIGTERM the instant it exists — the race of a stop signal
# arriving between the fork and the worker's own signal handling.
SIGTERM_AT_BIRTH = """
import os, signal, sys
real_fork, forks = os.fork, []
def fork():
    forks.append(None)
    pid = real_fork()
    if pid == 0 and len(forks) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    elif pid:
        with open(sys.argv[1], "a") as log:
            log.write(f"{pid}\\n")
    return pid
os.fork = fork
from edge.server import run
from shared.settings import EdgeSettings
run(EdgeSettings.from_env(), workers=2)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_worker_told_to_stop_as_it_is_forked_stops(env: dict[str, str], tmp_path: Path) -> None:
    """A stop signal that reaches a new worker before its own handlers are set stops it: it never forwards
    the signal to its siblings as if it were the parent, nor keeps serving as a stray worker."""
    forked = tmp_path / "forked"
    port = free_port()
    parent = spawn([sys.executable, "-c", SIGTERM_AT_BIRTH, str(forked)],
                   env={**os.environ, **env, "EDGE_BIND": f"127.0.0.1:{port}"})
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", parent)
        first, second = (int(pid) for pid in forked.read_text().split())
        os.kill(first, signal.SIGTERM)  # the parent replaces it: the third fork, told to stop at birth
        deadline = time.monotonic() + 20
        while len(forked.read_text().split()) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        pids = [int(pid) for pid in forked.read_text().split()]
        assert len(pids) >= 4, "the worker told to stop at birth was not replaced"
        await asyncio.sleep(1.0)
        assert not alive(pids[2]), "the worker told to stop at birth kept running"
        assert alive(second), "a sibling was stopped by the new worker"
        assert set(worker_pids(parent.pid)) == {second, pids[3]}
    finally:
        stop(parent)
    assert parent.returncode == 0
    assert not [pid for pid in [int(p) for p in forked.read_text().split()] if alive(pid)]
