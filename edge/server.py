"""The edge's protocol server: listening, connection bounds, timeouts, graceful drain and worker processes.

Workers share one listening socket bound by the parent before it forks, so the kernel hands each new
connection to a worker that is accepting: a worker that stops (SIGTERM) stops accepting first, finishes
the requests it has, and the others take the new connections. A worker holding `max_connections` stops
accepting in the same way until one closes, so excess clients wait in the kernel's backlog instead of
costing memory here (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time

import uvloop

from edge.app import EdgeApp
from edge.protocol import HttpConnection
from edge.responses import http_date
from edge.scan_handler import ScanHandler
from shared.listen import BACKLOG, inherited, listen
from shared.processes import die_with_parent
from shared.settings import EdgeSettings

log = logging.getLogger(__name__)

TICK = 0.25  # seconds between sweeps for expired connections (and `date` header updates)
RESPAWN_PAUSE = 1.0  # seconds before replacing a worker that died, so a crash loop cannot spin


class EdgeServer:
    def __init__(self, app: EdgeApp, sock: socket.socket) -> None:
        self.app = app
        self.settings = app.settings
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.handler = ScanHandler(app, self)
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.date = http_date()
        # Connections take their deadlines from the clock of the last tick (a clock read per request costs
        # more than the rest of the deadline's work): it is at most TICK old while the loop keeps up, so a
        # TICK added to each timeout means no connection is closed before its time (docs/edge.md, "Limits").
        self.now = self.loop.time()
        self.header_timeout = self.settings.header_timeout + TICK
        self.keepalive_timeout = self.settings.keepalive_timeout + TICK
        self._listener: asyncio.Server | None = None
        self._resuming = False
        self._ticker: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        await self._listen()
        self._tick()

    async def _listen(self) -> None:
        # A duplicate of the shared socket: closing it stops this process accepting, the socket stays open.
        self._listener = await self.loop.create_server(lambda: HttpConnection(self), sock=self.sock.dup(),
                                                       backlog=BACKLOG)

    def _stop_accepting(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def opened(self, connection: HttpConnection) -> None:
        self.connections.add(connection)
        if len(self.connections) >= self.settings.max_connections:
            self._stop_accepting()
        if self.draining:
            connection.drain()

    def closed(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        if (self._listener is None and not self.draining and not self._resuming
                and len(self.connections) < self.settings.max_connections):
            self._resuming = True
            self.loop.create_task(self._resume())

    async def _resume(self) -> None:
        try:
            if not self.draining:
                await self._listen()
        finally:
            self._resuming = False

    def _tick(self) -> None:
        self.date = http_date()
        now = self.now = self.loop.time()
        for connection in [c for c in self.connections if c.deadline <= now]:
            connection.expire(now)
        self._ticker = self.loop.call_later(TICK, self._tick)

    async def drain(self) -> None:
        """Stop accepting, answer every request already read, close connections as they fall idle."""
        self.draining = True
        self._stop_accepting()
        for connection in list(self.connections):
            connection.drain()
        deadline = time.monotonic() + self.settings.drain_timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        if self._ticker is not None:
            self._ticker.cancel()


async def serve_process(settings: EdgeSettings, sock: socket.socket) -> None:
    """One edge process: start the app, serve until SIGTERM or SIGINT, drain, stop the app."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app = EdgeApp(settings)
    await app.startup()
    server = EdgeServer(app, sock)
    try:
        await server.start()
        log.info("edge process %d serving on %s:%d", os.getpid(), *settings.bind)
        await stop.wait()
        log.info("edge process %d draining", os.getpid())
        await server.drain()
    finally:
        await app.shutdown()


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _fork_worker(settings: EdgeSettings, sock: socket.socket) -> int:
    """Fork one worker. The caller blocks STOP_SIGNALS around this call (`_started`), so that a stop signal
    can reach neither the parent before it knows the new pid nor the child before it has the handlers of its
    own: otherwise a worker told to stop at birth would run the parent's handler (forwarding the signal to its
    siblings) and keep serving, a stray worker."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until serve_process drains on it instead
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            die_with_parent()  # a worker whose parent is gone (even by SIGKILL) drains and stops
            if os.getppid() != parent:  # the parent died before we asked to be told: nobody will tell us
                os._exit(0)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a signal sent meanwhile stops us now
            uvloop.run(serve_process(settings, sock))
        except BaseException:
            log.exception("edge worker failed")
            code = 1
        finally:
            os._exit(code)
    return pid


def _started(settings: EdgeSettings, sock: socket.socket, children: set[int]) -> None:
    """A new worker, in `children` before any stop signal can be handled."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        children.add(_fork_worker(settings, sock))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def run(settings: EdgeSettings, workers: int = 1) -> None:
    sock = inherited(settings.bind) or listen(settings.bind)  # inherited: from `scanroute up` (shared/listen.py)
    if workers <= 1:
        uvloop.run(serve_process(settings, sock))
        return
    stopping = False
    children: set[int] = set()

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(workers):
        if not stopping:
            _started(settings, sock, children)
    while children:
        pid, status = os.wait()
        children.discard(pid)
        if not stopping:
            log.error("edge worker %d exited (status %d); starting another", pid, status)
            time.sleep(RESPAWN_PAUSE)
            if not stopping:
                _started(settings, sock, children)
    sock.close()
