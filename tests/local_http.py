"""A real HTTP server on 127.0.0.1 for tests that make the system fetch or deliver something."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def local_server(routes: Iterable[web.AbstractRouteDef]) -> AsyncIterator[str]:
    """Serve `routes` on a free port; yields the base URL (`http://127.0.0.1:PORT`)."""
    app = web.Application()
    app.add_routes(list(routes))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
