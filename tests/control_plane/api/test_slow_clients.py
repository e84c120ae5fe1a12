"""A real control-plane process drops clients that send nothing or half a request; too many get a 503."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from shared.processes import spawn, stop
from tests.conftest import KeyFactory
from tests.ports import free_port

BOUND = 30.0  # seconds a socket waits for the server; a bound, not a measurement


@contextmanager
def control_plane(env: dict[str, str], **extra: str) -> Iterator[int]:
    port = free_port()
    process = spawn([sys.executable, "-m", "control_plane.cli", "control-plane"],
                    env={**os.environ, **env, "CONTROL_PLANE_BIND": f"127.0.0.1:{port}", **extra})
    try:
        deadline = time.monotonic() + BOUND
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "control plane did not start"
                time.sleep(0.1)
        yield port
    finally:
        stop(process, signal.SIGTERM)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=BOUND)
    return sock


def dropped(sock: socket.socket) -> bool:
    """Whether the server closes the connection without answering (recv sees EOF, not a timeout)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


async def test_silent_half_sent_and_stalled_requests_are_dropped(env: dict[str, str], make_key: KeyFactory) -> None:
    key = await make_key()
    with control_plane(env, CONTROL_PLANE_READ_TIMEOUT="0.5") as port:
        silent = connect(port)
        half_headers = connect(port)
        half_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: cp\r\nX-Slow: ")
        stalled_body = connect(port)
        stalled_body.sendall(f"POST /v1/qr-codes HTTP/1.1\r\nHost: cp\r\nAuthorization: Bearer {key}\r\n"
                             "Content-Length: 100\r\n\r\n{\"na".encode())
        healthy = connect(port)
        healthy.sendall(b"GET /healthz HTTP/1.1\r\nHost: cp\r\n\r\n")
        assert healthy.recv(4096).startswith(b"HTTP/1.1 200")
        healthy.close()
        assert dropped(silent) and dropped(half_headers) and dropped(stalled_body)


def ask(port: int, path: str) -> bytes:
    """One request on a connection of its own; the whole answer (the server closes past the limit)."""
    sock = connect(port)
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: cp\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
    finally:
        sock.close()


def test_connections_over_the_limit_get_a_503_counted_in_metrics_but_probes_pass(env: dict[str, str]) -> None:
    with control_plane(env, CONTROL_PLANE_MAX_CONNECTIONS="2", CONTROL_PLANE_READ_TIMEOUT="120") as port:
        held = [connect(port), connect(port)]
        try:
            assert ask(port, "/v1/qr-codes").startswith(b"HTTP/1.1 503")
            assert ask(port, "/openapi.json").startswith(b"HTTP/1.1 503")
            # A liveness probe and the scrape are answered on a busy process, and the refusals are counted.
            assert ask(port, "/healthz").startswith(b"HTTP/1.1 200")
            scraped = ask(port, "/metrics")
            assert scraped.startswith(b"HTTP/1.1 200")
            assert b"\nscanroute_api_refused_total 2.0\n" in scraped
            assert ask(port, "/readyz").startswith(b"HTTP/1.1 503")  # a full process is not ready for more
        finally:
            for sock in held:
                sock.close()
