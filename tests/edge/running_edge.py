"""The edge as a real process (`scanroute edge`), for tests that need several processes or a kill -9."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from shared.processes import spawn, stop
from tests.ports import free_port
from tests.test_e2e import wait_healthy


@contextmanager
def running_edge(env: dict[str, str], workers: int = 1, port: int | None = None) -> Iterator[EdgeProcess]:
    edge = EdgeProcess(env, workers, port or free_port())
    try:
        yield edge
    finally:
        edge.stop()


class EdgeProcess:
    def __init__(self, env: dict[str, str], workers: int, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        full_env = {**os.environ, **env, "EDGE_BIND": f"127.0.0.1:{port}"}
        self.process: subprocess.Popen[bytes] = spawn(
            [sys.executable, "-m", "control_plane.cli", "edge", "--workers", str(workers)], env=full_env)
        wait_healthy(f"{self.url}/healthz", self.process)

    def stop(self) -> None:
        stop(self.process)
