"""A listening socket that outlives the process serving it.

`scanroute up` binds the edge's address once and hands the socket to every edge process it starts
(`EDGE_LISTEN_FD`, docs/operations.md "Supervision"). While an edge process stops or restarts — a SIGTERM,
a crash, a `kill -9` — the socket stays open in the supervisor, so connections that arrive meanwhile wait in
the kernel's backlog and are answered by the next process instead of being refused.
"""

from __future__ import annotations

import os
import socket

BACKLOG = 4096
LISTEN_FD_VAR = "EDGE_LISTEN_FD"


def listen(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def inherited(address: tuple[str, int], env: dict[str, str] | None = None) -> socket.socket | None:
    """The listening socket a supervisor passed down for `address`, or None when there is none."""
    value = (os.environ if env is None else env).get(LISTEN_FD_VAR, "").strip()
    if not value:
        return None
    sock = socket.socket(fileno=int(value))
    bound = sock.getsockname()[:2]
    if sock.type != socket.SOCK_STREAM or bound[1] != address[1]:
        sock.detach()
        raise RuntimeError(f"{LISTEN_FD_VAR}={value} is not a TCP socket listening on port {address[1]} "
                           f"(it is {bound!r})")
    sock.setblocking(False)
    return sock
