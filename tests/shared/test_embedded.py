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
from typing import Any

import asyncpg
import pytest
import redis

from shared import embedded
from shared.embedded import (
    POSTGRES_BINARIES,
    REDIS_BINARIES,
    EmbeddedError,
    EmbeddedServices,
    find_binary,
    redis_answers,
    temporary_root,
)
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


def _kill_and_expect_servers_gone(parent: subprocess.Popen[Any], info: dict[str, Any]) -> None:
    """A `kill -9` of the parent: its private servers stop by themselves (the parent-death signal)."""
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (listening(info["pg"]) or listening(info["redis"])):
        time.sleep(0.1)
    assert not listening(info["pg"]) and not listening(info["redis"])


def test_servers_die_with_a_killed_parent() -> None:
    """A crashed test run (or `kill -9` of `scanroute up`) leaves no server listening."""
    parent = subprocess.Popen([sys.executable, "-c", STARTER], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert parent.stdout is not None
    info = json.loads(parent.stdout.readline())
    try:
        assert listening(info["pg"]) and listening(info["redis"])
        _kill_and_expect_servers_gone(parent, info)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        shutil.rmtree(info["root"], ignore_errors=True)


CTRL_C_IGNORING_STARTER = """
import json, signal, time
from shared.embedded import EmbeddedServices, temporary_root
services = EmbeddedServices(temporary_root("scanroute-ctrl-c-"), persistent=False)
services.start()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # like `scanroute up`, which stops its children first
print(json.dumps({"pg": services.pg_port, "redis": services.redis_port, "root": str(services.root),
                  "password": services.redis_password}), flush=True)
time.sleep(600)
"""


def test_ctrl_c_to_the_process_group_does_not_reach_the_servers() -> None:
    """Ctrl-C in a terminal is SIGINT to the whole foreground process group. `scanroute up` must stop its
    children first, while the private servers still serve their last work; so the servers are in sessions of
    their own, and stop only when their parent stops them or dies."""
    parent = subprocess.Popen([sys.executable, "-c", CTRL_C_IGNORING_STARTER], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
    assert parent.stdout is not None
    info = json.loads(parent.stdout.readline())
    try:
        os.killpg(parent.pid, signal.SIGINT)
        time.sleep(1)
        assert listening(info["pg"]) and redis_answers(info["redis"], info["password"])
        _kill_and_expect_servers_gone(parent, info)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        shutil.rmtree(info["root"], ignore_errors=True)


def test_a_redis_that_cannot_start_names_its_real_log() -> None:
    """E.g. a stale redis-server from a crashed run holds the port: the error must point at a log that exists."""
    root = temporary_root("scanroute-redis-log-")
    services = EmbeddedServices(root, persistent=False)
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            services.redis_port = taken.getsockname()[1]
            with pytest.raises(EmbeddedError) as failure:
                services.start()
        named = [word.rstrip(".;") for word in str(failure.value).split() if word.endswith(".log")]
        assert named == [str(root / "redis.log")] and Path(named[0]).exists(), str(failure.value)
    finally:
        services.stop()
        shutil.rmtree(root, ignore_errors=True)


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


@pytest.mark.parametrize(("given", "absent", "status"), [
    ({"DATABASE_URL": "postgresql://db.example/x"}, POSTGRES_BINARIES, 0),
    ({"REDIS_URL": "redis://cache.example/0"}, REDIS_BINARIES, 0),
    ({"DATABASE_URL": "postgresql://db.example/x"}, REDIS_BINARIES, 1),
    ({}, REDIS_BINARIES, 1),
])
def test_the_check_asks_only_for_the_servers_whose_url_is_not_given(
        given: dict[str, str], absent: tuple[str, ...], status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make system-deps` runs it: with DATABASE_URL given, `scanroute up` and the tests start Redis alone, so
    the PostgreSQL binaries are not needed (and the other way round)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(embedded, "find_binary", lambda name: None if name in absent else f"/usr/bin/{name}")
    assert embedded.main(["embedded", "check"]) == status
