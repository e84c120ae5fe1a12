"""docs/api.md §3.2 across edge processes, under load and faults: once a write has answered 2xx, no edge answers
a scan according to the state before it. No grace period anywhere: every scan is made right after the
write's response, and compared with what the control plane says the code resolves to now.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import httpx

from edge.redis_repair import CHECK_INTERVAL
from shared.keys import EDGE_LEASE
from shared.processes import spawn, stop
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane, edge_client, repair
from tests.edge.private_redis import PrivateRedis
from tests.edge.running_edge import EdgeProcess, running_edge
from tests.edge.test_code_filter import sync_once
from tests.edge.test_scan import make_code

HOST = {"host": "qr.test"}
UNLIMITED = {"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000"}  # the campaign is one busy key
Answer = tuple[int, str | None]  # status, Location


@contextmanager
def load_generator(edges: list[EdgeProcess], slug: str, connections: int = 32) -> Iterator[None]:
    """Saturate the edges from a process of its own, scanning one hot code."""
    process = spawn([sys.executable, "-m", "tests.edge.load_generator", "qr.test", f"/{slug}", str(connections),
                     *(edge.url for edge in edges)], env={**os.environ}, stdout=subprocess.PIPE)
    try:
        yield
    finally:
        stop(process)
        assert process.stdout is not None
        with process.stdout:
            answered = int(process.stdout.read() or b"0")
        print(f"load generator: {answered} answers")  # noqa: T201 - shown with -s
        assert answered > 0, "the load generator got no answer: the edges were not under load"


class Campaign:
    """Changes of every kind that alters a scan's answer, each followed at once by scans on every edge."""

    def __init__(self, api: httpx.AsyncClient, key: str, edges: list[httpx.AsyncClient]) -> None:
        self.api = api
        self.key = key
        self.edges = edges
        self.skip: set[int] = set()  # indexes of edges not scanned right now (frozen)
        self.stale: list[tuple[str, int, str, Answer, Answer]] = []
        self.write_seconds: list[float] = []
        self.scanned = 0

    async def setup(self) -> None:
        self.group = await self.post("/v1/qr-groups", {"destination": {"type": "url", "url": "https://g0.example/"},
                                                        "url_params": {"g": "0"}})
        self.inheriting = await make_code(self.api, self.key, group_id=self.group["id"])
        self.own = await make_code(self.api, self.key, group_id=self.group["id"],
                                   destination={"type": "url", "url": "https://c0.example/"})
        self.codes = [self.inheriting, self.own]
        await self.check("setup", self.codes)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict((await self.write("POST", path, body)).json())

    async def write(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        started = time.perf_counter()
        response = await self.api.request(method, path, headers=bearer(self.key), json=body)
        self.write_seconds.append(time.perf_counter() - started)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response

    async def expected(self, code: dict[str, Any]) -> Answer:
        response = await self.api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(self.key))
        if response.status_code == 404:
            return 410, None  # deleted
        resolved = response.json()["resolved"]
        if resolved["status"] == "archived":
            return 410, None
        if resolved["status"] == "inactive" or resolved["url"] is None:
            return 404, None
        return 302, resolved["url"]

    async def scan_everywhere(self, codes: list[dict[str, Any]]) -> list[tuple[int, str, Answer]]:
        async def scan(n: int, edge: httpx.AsyncClient, slug: str) -> tuple[int, str, Answer]:
            response = await edge.get(f"/{slug}", headers=HOST)
            return n, slug, (response.status_code, response.headers.get("location"))

        return list(await asyncio.gather(*(scan(n, edge, code["slug"]) for n, edge in enumerate(self.edges)
                                           if n not in self.skip for code in codes)))

    async def check(self, change: str, codes: list[dict[str, Any]]) -> None:
        answers = await self.scan_everywhere(codes)  # at once: before anything else after the 2xx
        truth = {code["slug"]: await self.expected(code) for code in codes}
        self.scanned += len(answers)
        for n, slug, answer in answers:
            if answer != truth[slug]:
                self.stale.append((change, n, slug, answer, truth[slug]))

    async def change(self, i: int) -> None:
        kind = CHANGES[i % len(CHANGES)]
        await self.check(kind.__name__, await kind(self, i))


async def code_destination(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-codes/{c.own['id']}", {"destination": {"url": f"https://c{i}.example/"}})
    return [c.own]


async def group_destination(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-groups/{c.group['id']}", {"destination": {"url": f"https://g{i}.example/"}})
    return [c.inheriting, c.own]


async def code_status(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-codes/{c.inheriting['id']}", {"status": "inactive" if i % 2 else None})
    return [c.inheriting]


async def group_status(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-groups/{c.group['id']}", {"status": "archived" if i % 2 else "active"})
    return [c.inheriting, c.own]


async def code_params(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-codes/{c.inheriting['id']}", {"url_params": {"c": str(i)}})
    return [c.inheriting]


async def group_params(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-groups/{c.group['id']}", {"url_params": {"g": str(i)}})
    return [c.inheriting, c.own]


async def code_param_item(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PUT", f"/v1/qr-codes/{c.own['id']}/url-params/item", {"value": str(i)})
    return [c.own]


async def group_param_item(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PUT", f"/v1/qr-groups/{c.group['id']}/url-params/item", {"value": str(i)})
    return [c.inheriting]


async def detach_or_attach(c: Campaign, i: int) -> list[dict[str, Any]]:
    await c.write("PATCH", f"/v1/qr-codes/{c.inheriting['id']}", {"group_id": None if i % 2 else c.group["id"]})
    return [c.inheriting]


async def code_delete(c: Campaign, i: int) -> list[dict[str, Any]]:
    doomed = await make_code(c.api, c.key, destination={"type": "url", "url": f"https://doomed{i}.example/"})
    await c.scan_everywhere([doomed])  # cached everywhere before it goes
    await c.write("DELETE", f"/v1/qr-codes/{doomed['id']}")
    return [doomed]


async def group_delete(c: Campaign, i: int) -> list[dict[str, Any]]:
    group = await c.post("/v1/qr-groups", {"destination": {"type": "url", "url": f"https://h{i}.example/"}})
    child = await make_code(c.api, c.key, group_id=group["id"])
    await c.scan_everywhere([child])
    await c.write("DELETE", f"/v1/qr-groups/{group['id']}")
    return [child]  # detached, with no destination of its own


async def create_after_404(c: Campaign, i: int) -> list[dict[str, Any]]:
    slug = f"late-{i}"
    await c.scan_everywhere([{"slug": slug}])  # cached as unknown everywhere
    return [await c.post("/v1/qr-codes", {"slug": slug, "destination": {"type": "url", "url": f"https://n{i}.ex/"}})]


async def mint(c: Campaign, i: int) -> list[dict[str, Any]]:
    minted = await c.post(f"/v1/qr-groups/{c.group['id']}/codes", {"count": 3})
    return list(minted["data"])


CHANGES: list[Callable[[Campaign, int], Awaitable[list[dict[str, Any]]]]] = [
    code_destination, group_destination, code_status, group_status, code_params, group_params, code_param_item,
    group_param_item, detach_or_attach, code_delete, group_delete, create_after_404, mint]


@asynccontextmanager
async def edge_clients(edges: list[EdgeProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [httpx.AsyncClient(base_url=edge.url, timeout=30) for edge in edges]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def test_200_changes_of_every_kind_are_seen_at_once_by_two_saturated_edges(
        make_key: KeyFactory, env: dict[str, str]) -> None:
    key = await make_key()
    async with control_plane({**env, **UNLIMITED}) as api:
        hot = await make_code(api, key, destination={"type": "url", "url": "https://hot.example/"})
        with running_edge(env) as first, running_edge(env) as second, load_generator([first, second], hot["slug"]):
            async with edge_clients([first, second]) as edges:
                campaign = Campaign(api, key, edges)
                await campaign.setup()
                for i in range(1, 201):
                    await campaign.change(i)
    assert campaign.scanned >= 400
    assert campaign.stale == []


async def test_an_edge_frozen_for_3s_delays_no_write_past_the_lease_and_answers_fresh_on_resume(
        make_key: KeyFactory, env: dict[str, str]) -> None:
    key = await make_key()
    async with control_plane({**env, **UNLIMITED}) as api:
        hot = await make_code(api, key, destination={"type": "url", "url": "https://hot.example/"})
        with running_edge(env) as first, running_edge(env) as frozen, load_generator([first, frozen], hot["slug"]):
            async with edge_clients([first, frozen]) as edges:
                campaign = Campaign(api, key, edges)
                await campaign.setup()
                for i in range(1, 14):
                    await campaign.change(i)  # every kind once, both edges scanned
                frozen.process.send_signal(signal.SIGSTOP)
                campaign.skip.add(1)
                frozen_at = time.monotonic()
                before = len(campaign.write_seconds)
                try:
                    i = 14
                    while time.monotonic() - frozen_at < 3.0:
                        await campaign.change(i)
                        i += 1
                finally:
                    frozen.process.send_signal(signal.SIGCONT)
                during = len(campaign.write_seconds)
                campaign.skip.clear()
                await campaign.check("after resume", campaign.codes)  # at once: no catching up allowed first
                for j in range(i, i + 13):
                    await campaign.change(j)
    waits = campaign.write_seconds[before:during]
    assert len(waits) >= 3 and max(waits) < EDGE_LEASE + 0.5, waits  # bounded by the lease
    assert campaign.stale == []


async def test_a_redis_restart_with_stale_rows_never_serves_them(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    async with control_plane({**private_env, **UNLIMITED}) as api, edge_client(private_env) as (one, first), \
            edge_client(private_env) as (two, second):
        campaign = Campaign(api, key, [first, second])
        await campaign.setup()
        for i in range(1, 14):
            await campaign.change(i)  # everything cached in Redis and in both edges
        await asyncio.to_thread(private_redis.stop)  # keeps its data (append-only file)
        for i in range(14, 20):  # writes while Redis is down: committed, 2xx, scans read PostgreSQL
            await campaign.change(i)
        await asyncio.to_thread(private_redis.start)  # back, with rows older than PostgreSQL's
        deadline = time.monotonic() + 15
        while not (one.link.up and two.link.up):
            await campaign.check("redis back, not repaired", campaign.codes)
            assert time.monotonic() < deadline, "the edges did not reconnect"
        for _ in range(5):
            await campaign.check("redis back, not repaired", campaign.codes)
        assert not one.link.rows_current and not two.link.rows_current  # the repair is still pending
        await repair(private_env)
        while not (one.link.rows_current and two.link.rows_current):
            assert time.monotonic() < deadline, "the edges did not trust the repaired Redis again"
            await asyncio.sleep(0.05)
        for i in range(20, 33):
            await campaign.change(i)
    assert campaign.stale == []


# Waits for the cache sync's cursor are long: its horizon is the whole PostgreSQL cluster's oldest running
# writer, and the parallel tests' transactions share this cluster (docs/freshness.md, "Watching the cache sync").
SYNC_WAIT = 60.0


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_redis_restored_from_an_older_file_never_serves_what_a_write_replaced(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    """No write failed, so no repair is marked: Redis simply comes back holding older rows (restored from a
    backup, a failover to a replica that missed the last writes, the last second of `appendfsync everysec`)."""
    key = await make_key()
    async with control_plane(private_env) as api, edge_client(private_env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/old"})
        await repair(private_env)
        backup = private_redis.folder.with_name("redis-backup")
        await asyncio.to_thread(private_redis.copy_data, backup)
        await until(lambda: app.link.rows_readable, "the edge never read Redis's rows again", SYNC_WAIT)
        response = await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                                   json={"destination": {"url": "https://example.com/new"}})
        assert response.status_code == 200
        assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/new"

        contacts = app.link.contacts
        await asyncio.to_thread(private_redis.restore, backup)
        await until(lambda: app.link.up and app.link.contacts > contacts, "the edge did not reconnect")
        await asyncio.sleep(5 * CHECK_INTERVAL)  # the edge has checked whether Redis's rows count again
        answers = []
        for _ in range(5):  # the cache sync has not run yet
            answers.append((await edge.get(f"/{code['slug']}")).headers.get("location"))
            await asyncio.sleep(0.1)
        assert answers == ["https://example.com/new"] * 5
        assert (await edge.get("/readyz")).json()["freshness"]["redis_rows"] == "pending repair check"

        await repair(private_env)  # re-applies the outbox from the restored Redis's own, older, position
        await until(lambda: app.link.rows_readable, "the edge never read the repaired Redis's rows", SYNC_WAIT)
        assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/new"


class HeldCommits:
    """While held, a transaction that writes an event of a code's organisation waits at its COMMIT with its `seq`
    already taken: a deferred trigger waits for an advisory lock this connection holds. PostgreSQL itself keeps
    it in flight, as a slow client or a busy machine would."""

    LOCK = 0x5CA9_F5E5

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self.conn = conn

    @classmethod
    @asynccontextmanager
    async def of(cls, database_url: str, code_id: str) -> AsyncIterator[HeldCommits]:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            org_id = await conn.fetchval("SELECT org_id FROM qr_codes WHERE id = $1", code_id)
            await conn.execute(f"""
                CREATE FUNCTION wait_for_release() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN PERFORM pg_advisory_xact_lock_shared({cls.LOCK}); RETURN NULL; END $$;
                CREATE CONSTRAINT TRIGGER held_commit AFTER INSERT ON events DEFERRABLE INITIALLY DEFERRED
                    FOR EACH ROW WHEN (NEW.org_id = '{org_id}') EXECUTE FUNCTION wait_for_release()""")
            await conn.execute("SELECT pg_advisory_lock($1)", cls.LOCK)
            yield cls(conn)
            await conn.execute("SELECT pg_advisory_unlock($1)", cls.LOCK)
        finally:
            await conn.close()

    async def waiting(self, transactions: int) -> None:
        deadline = time.monotonic() + 15
        while await self.conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1"
                                       " AND NOT granted", self.LOCK) < transactions:
            assert time.monotonic() < deadline, "the writes did not reach their COMMIT"
            await asyncio.sleep(0.05)


async def test_a_write_that_commits_after_a_later_one_is_still_repaired(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    """`seq` is taken at INSERT: a write can commit an event below one the cache sync has already passed. If its
    write-through then fails, Redis is repaired all the same — its changed row, and its new codes' bits in the
    filter of existing codes (else the edges would answer 404 for them)."""
    key, other = await make_key("acme"), await make_key("other")
    async with control_plane(private_env) as api, edge_client(private_env) as (app, edge):
        code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/old"})
        group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
            "destination": {"type": "url", "url": "https://example.com/group"}})).json()
        await sync_once(private_env)  # the cursor, and the filter of existing codes
        assert (await edge.get(f"/{code['slug']}")).headers["location"] == "https://example.com/old"

        async with HeldCommits.of(private_env["DATABASE_URL"], code["id"]) as held:
            patch = asyncio.create_task(api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key),
                                                  json={"destination": {"url": "https://example.com/new"}}))
            mint = asyncio.create_task(api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key),
                                                json={"count": 3}))
            await held.waiting(2)
            await make_code(api, other, destination={"type": "url", "url": "https://example.com/other"})
            await sync_once(private_env)  # the cache sync passes that later write
            await asyncio.to_thread(private_redis.stop)
        # Both commit now, their write-through fails (Redis down): Redis is marked for repair; they answer 2xx.
        assert (await patch).status_code == 200
        minted = (await mint).json()["data"]
        await asyncio.to_thread(private_redis.start)

        deadline = time.monotonic() + 15
        while not (app.link.rows_readable and app.code_filter.trusted()):
            assert time.monotonic() < deadline, "the edge never trusted the repaired Redis again"
            await sync_once(private_env)  # the cache sync, as often as it runs
            await asyncio.sleep(0.2)
        location = (await edge.get(f"/{code['slug']}")).headers.get("location")
        statuses = [(await edge.get(f"/{c['slug']}")).status_code for c in minted]
        assert (location, statuses) == ("https://example.com/new", [302] * 3)
