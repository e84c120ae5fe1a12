"""The dispatcher rides out a PostgreSQL outage: a real TCP proxy in front of the real server is cut."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from shared.database import create_pool
from shared.settings import WebhookSettings
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, Receiver, create_endpoint, create_group, deliveries


class Proxy:
    """Forwards 127.0.0.1:port to the database; `cut` drops every connection and stops listening."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self.writers |= {client_writer, server_writer}
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[Proxy]:
    parts = urlsplit(database_url)
    running = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await running.start()
    try:
        yield running
    finally:
        await running.cut()


async def eventually(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_deliveries_resume_when_postgresql_returns(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        database_url: str, proxy: Proxy) -> None:
    parts = urlsplit(database_url)
    via_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    pool = await create_pool(via_proxy, min_size=0, max_size=4)
    session = create_session(webhook_settings.delivery_timeout)
    stop = asyncio.Event()
    settings = dataclasses.replace(webhook_settings, concurrency=4, poll_interval=0.05)
    running = asyncio.create_task(Dispatcher(settings, pool, session).run(stop))
    try:
        await create_group(api, key, "before the outage")
        await eventually(lambda: len(receiver.requests) == 1)
        deadline = time.monotonic() + 30
        while (await deliveries(api, key, endpoint["id"]))[0]["status"] != "succeeded":  # recorded, too
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

        await proxy.cut()
        await create_group(api, key, "during the outage")  # committed directly, not through the proxy
        await asyncio.sleep(1.0)
        assert not running.done(), "the dispatcher must not die with its database"
        assert len(receiver.requests) == 1

        await proxy.start()
        await eventually(lambda: any(b"during the outage" in r.body for r in receiver.requests))
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
        await session.close()
        await pool.close()
