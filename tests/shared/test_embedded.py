from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT

STARTER = """
import json, sys, time
from shared.embedded import EmbeddedServices, temporary_root
services = EmbeddedServices(temporary_root("scanroute-orphan-"), persistent=False)
services.start()
print(json.dumps({"pg": services.pg_port, "redis": services.redis_port, "root": str(services.root)}), flush=True)
time.sleep(600)
"""


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_servers_die_with_a_killed_parent() -> None:
    """A crashed test run (or `kill -9` of `scanroute up`) leaves no server listening."""
    parent = subprocess.Popen([sys.executable, "-c", STARTER], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert parent.stdout is not None
    info = json.loads(parent.stdout.readline())
    try:
        assert listening(info["pg"]) and listening(info["redis"])
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (listening(info["pg"]) or listening(info["redis"])):
            time.sleep(0.1)
        assert not listening(info["pg"]) and not listening(info["redis"])
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        shutil.rmtree(info["root"], ignore_errors=True)
