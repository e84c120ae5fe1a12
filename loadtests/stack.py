"""A scratch scanroute stack for benchmark and fuzz drivers.

Private PostgreSQL and Redis (unless DATABASE_URL/REDIS_URL are given), a migrated scratch database with
one organisation and an all-scopes key (`scratch_database`), and the requested process kinds on free ports
(`scratch_stack`). Everything is
removed on exit, including the scratch database and Redis keys on servers given by URL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis

from control_plane.cli.migrate import migrate
from control_plane.services.keys import SCOPES, create_key, ensure_org
from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.processes import spawn, stop


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@dataclass
class Stack:
    database_url: str
    redis_url: str
    namespace: str
    key: str
    env: dict[str, str]
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


async def _prepare(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, name))
    try:
        await migrate(conn)
        org_id = await ensure_org(conn, "bench")
        return (await create_key(conn, org_id, livemode=True, scopes=list(SCOPES))).secret
    finally:
        await conn.close()


async def _drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def _clear_namespace(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy")


@dataclass(frozen=True)
class Scratch:
    database_url: str  # a migrated database of its own
    redis_url: str
    namespace: str  # a Redis key prefix of its own
    key: str  # an all-scopes live API key of the organisation "bench"


@contextmanager
def scratch_database() -> Iterator[Scratch]:
    """The stores of a scratch stack without its processes, for drivers that run the code in-process.
    Call it outside an event loop (it runs its own to prepare and drop the database)."""
    with ExitStack() as cleanup:
        database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        if not (database_url and redis_url):
            services = EmbeddedServices(temporary_root("scanroute-bench-"), persistent=False)
            cleanup.callback(shutil.rmtree, services.root, True)
            cleanup.enter_context(services)
            database_url, redis_url = services.database_url, services.redis_url
        name, namespace = f"scanroute_scratch_{secrets.token_hex(4)}", f"scratch{secrets.token_hex(4)}"
        key = asyncio.run(_prepare(database_url, name))
        cleanup.callback(lambda: asyncio.run(_drop(database_url, name)))
        cleanup.callback(_clear_namespace, redis_url, namespace)
        yield Scratch(with_database(database_url, name), redis_url, namespace, key)


@contextmanager
def scratch_stack(kinds: tuple[str, ...] = ("control-plane",), **extra_env: str) -> Iterator[Stack]:
    with ExitStack() as cleanup:
        scratch = cleanup.enter_context(scratch_database())
        cp_port, edge_port = free_port(), free_port()
        env = {**os.environ, "DATABASE_URL": scratch.database_url, "REDIS_URL": scratch.redis_url,
               "REDIS_NAMESPACE": scratch.namespace, "CONTROL_PLANE_BIND": f"127.0.0.1:{cp_port}",
               "EDGE_BIND": f"127.0.0.1:{edge_port}", "DEFAULT_DOMAIN": f"127.0.0.1:{edge_port}",
               "SCAN_HASH_SECRET": secrets.token_hex(16), "RATE_LIMIT_PER_SECOND": "1000000",
               "RATE_LIMIT_BURST": "1000000", "ADDRESS_RATE_LIMIT_PER_SECOND": "1000000",
               "ADDRESS_RATE_LIMIT_BURST": "1000000", **extra_env}
        stack = Stack(scratch.database_url, scratch.redis_url, scratch.namespace, scratch.key, env)
        for kind in kinds:
            process = spawn([sys.executable, "-m", "control_plane.cli", *kind.split()], env=env)
            cleanup.callback(stop, process, signal.SIGTERM)
            stack.processes[kind.split()[0]] = process
        if "control-plane" in stack.processes:
            stack.urls["api"] = f"http://127.0.0.1:{cp_port}"
        if "edge" in stack.processes:
            stack.urls["edge"] = f"http://127.0.0.1:{edge_port}"
        for url in stack.urls.values():
            _wait_healthy(url)
        yield stack
