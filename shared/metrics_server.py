"""A worker's Prometheus endpoint: prometheus-client's small HTTP server in a thread, no web framework."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


@contextmanager
def metrics_server(bind: tuple[str, int] | None, registry: CollectorRegistry) -> Iterator[None]:
    """Serves `registry` at http://host:port/metrics while the block runs; nothing when `bind` is None."""
    if bind is None:
        yield
        return
    host, port = bind
    server, thread = start_http_server(port, host, registry=registry)
    log.info("metrics at http://%s:%d/metrics", host, port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
