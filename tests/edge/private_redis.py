"""A redis-server of the test's own, which the test may stop and start again (an outage on demand).

Append-only with fsync always, so that what Redis acknowledged before a stop is there after the start.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from shared.embedded import find_binary, redis_answers
from shared.processes import spawn, stop
from tests.ports import free_port


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [str(find_binary("redis-server")), "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.folder), "--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.process = spawn(argv, death_signal=signal.SIGKILL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_answers(self.port):
            assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGTERM)
            self.process = None

    def copy_data(self, backup: Path) -> None:
        """Keep a copy of what Redis holds now, as a backup or a replica does (Redis stops meanwhile)."""
        self.stop()
        shutil.copytree(self.folder, backup)
        self.start()

    def restore(self, backup: Path) -> None:
        """Restart with the data of an earlier `copy_data` instead of its own."""
        self.stop()
        shutil.rmtree(self.folder)
        shutil.copytree(backup, self.folder)
        self.start()
