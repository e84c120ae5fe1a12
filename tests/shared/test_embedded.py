from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import redis

from shared.embedded import EmbeddedServices, find_binary, redis_answers, temporary_root
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


def test_private_servers_let_no_one_in_without_the_generated_passwords(tmp_path: Path) -> None:
    root = temporary_root("scanroute-private-")
    services = EmbeddedServices(root, persistent=True)
    try:
        services.start()
        anonymous = subprocess.run([str(find_binary("psql")), "-w", "-h", "127.0.0.1", "-p", str(services.pg_port),
                                    "-U", "postgres", "-d", "scanroute", "-c", "SELECT 1"],
                                   capture_output=True, text=True, env={**os.environ, "PGPASSWORD": ""})
        assert anonymous.returncode != 0 and "password" in anonymous.stderr
        assert not redis_answers(services.redis_port)
        with socket.create_connection(("127.0.0.1", services.redis_port), timeout=5) as sock:
            sock.sendall(b"SET hijack 1\r\n")
            assert sock.recv(64).startswith(b"-NOAUTH")
        client = redis.Redis.from_url(services.redis_url)
        client.set("api-key-in-aof", "qr_live_secret")
        client.close()
        assert asyncio.run(_select_one(services.database_url)) == 1
        services.stop()
        services.start()  # the same data and passwords again
        assert redis_answers(services.redis_port, services.redis_password)
        assert asyncio.run(_select_one(services.database_url)) == 1
    finally:
        services.stop()
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.parent.name == "appendonlydir" for p in files)
    readable = [str(p) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert readable == []
    for folder in (root / "pgdata", root / "redis"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    shutil.rmtree(root, ignore_errors=True)


async def _select_one(url: str) -> int:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return int(await conn.fetchval("SELECT 1"))
    finally:
        await conn.close()
