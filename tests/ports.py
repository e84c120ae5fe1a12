"""Ports for the servers the tests start, without the race of "bind port 0, close it, let the server bind it".

A port picked that way is free only until it is closed: another test's `bind(0)`, or any outgoing connection,
may be given it before the server binds it (a webhook receiver once got a port that `test_up` was polling
for an edge's `/healthz`). So each pytest-xdist worker takes ports from its own slice of the range below the
kernel's ephemeral ports, which `bind(0)` and outgoing connections never use, and hands each out once. A
server the test stops and starts again (a private Redis) finds its port still free.
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOWEST = 10_000  # below: the well-known services a machine runs (PostgreSQL, Redis, brokers)


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    size = (_ephemeral_start() - LOWEST) // max(workers, 1)
    start = LOWEST + int(worker or 0) * size
    return range(start, start + size)


_ports: Iterator[int] = itertools.cycle(_slice())  # wraps only after thousands of servers


def free_port() -> int:
    """A port of this worker's slice that nothing listens on now and that no other test was given."""
    for _ in range(len(_slice())):
        port = next(_ports)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # in use, or in TIME_WAIT from an earlier run
                continue
        return port
    raise RuntimeError("no free port in this test worker's slice")
