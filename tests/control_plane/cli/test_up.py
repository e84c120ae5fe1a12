"""`scanroute up` under a kill -9 of a worker: it is restarted, redirects never stop, Ctrl-C stops all."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from control_plane.cli.supervisor import _masked
from shared.embedded import redis_answers, temporary_root
from tests.conftest import ROOT
from tests.ports import free_port

DEADLINE = 60.0  # seconds any one step may take on a loaded machine; a bound, not a measurement


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {DEADLINE:g} s: {what}")


def status(root: Path) -> dict[str, dict[str, object]]:
    try:
        return dict(json.loads((root / ".scanroute" / "processes.json").read_text()))
    except (OSError, ValueError):
        return {}


def test_kill_9_of_a_worker_is_survived(env: dict[str, str], tmp_path: Path) -> None:
    edge, cp = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    stack_env = {**os.environ, **env, "EDGE_BIND": edge, "CONTROL_PLANE_BIND": cp, "DEFAULT_DOMAIN": edge}
    up = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "up"], cwd=tmp_path, env=stack_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"http://{edge}/healthz") and answers(f"http://{cp}/healthz"), "stack up")
        wait_for(lambda: status(tmp_path).get("ingest", {}).get("pid"), "ingest running")
        victim = int(status(tmp_path)["ingest"]["pid"])  # type: ignore[call-overload]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: status(tmp_path)["ingest"]["restarts"] == 1
                 and status(tmp_path)["ingest"]["pid"] not in (None, victim), "ingest restarted")
        assert answers(f"http://{edge}/healthz") and answers(f"http://{cp}/healthz")
        assert status(tmp_path)["edge"]["restarts"] == 0
    finally:
        up.send_signal(signal.SIGTERM)
        output = up.communicate(timeout=DEADLINE)[0].decode()
    assert up.returncode == 0, output
    assert "ingest exited with signal SIGKILL" in output and "restarted ingest" in output
    assert not answers(f"http://{edge}/healthz")


def test_a_restarting_edge_refuses_no_connection(env: dict[str, str], tmp_path: Path) -> None:
    """`scanroute up` holds the edge's listening socket: while the edge is down (kill -9, or SIGTERM and
    its drain) new connections wait for the restarted process instead of being refused."""
    edge, cp = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    stack_env = {**os.environ, **env, "EDGE_BIND": edge, "CONTROL_PLANE_BIND": cp, "DEFAULT_DOMAIN": edge}
    up = subprocess.Popen([sys.executable, "-m", "control_plane.cli", "up"], cwd=tmp_path, env=stack_env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(f"http://{edge}/healthz") and answers(f"http://{cp}/healthz"), "stack up")
        for restart, sig in enumerate((signal.SIGKILL, signal.SIGTERM), start=1):
            victim = int(status(tmp_path)["edge"]["pid"])  # type: ignore[call-overload]
            os.kill(victim, sig)
            wait_for(lambda victim=victim: status(tmp_path)["edge"]["pid"] != victim,  # type: ignore[misc]
                     "the edge's exit noticed")
            # No edge process is running now (the restart waits out its backoff): the connection must wait.
            with urllib.request.urlopen(f"http://{edge}/healthz", timeout=DEADLINE) as response:
                assert response.status == 200
            wait_for(lambda restart=restart: status(tmp_path)["edge"]["restarts"] == restart,  # type: ignore[misc]
                     "edge restarted")
    finally:
        up.send_signal(signal.SIGTERM)
        output = up.communicate(timeout=DEADLINE)[0].decode()
    assert up.returncode == 0, output


def _up(env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """`scanroute up` in a session of its own, with only the store URLs in `env` (none from this test run)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    edge, cp = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    return subprocess.Popen([sys.executable, "-m", "control_plane.cli", "up"], cwd=cwd,
                            env={**base, "PYTHONPATH": str(ROOT), "EDGE_BIND": edge, "CONTROL_PLANE_BIND": cp,
                                 "DEFAULT_DOMAIN": edge, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(up: subprocess.Popen[bytes]) -> str:
    if up.poll() is None:
        up.send_signal(signal.SIGTERM)
    try:
        output = up.communicate(timeout=DEADLINE)[0]
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        output = up.communicate()[0]
    return output.decode(errors="replace")


async def _has_demo_org(url: str) -> bool:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM organisations WHERE name = 'demo'"))
    finally:
        await conn.close()


def test_a_given_database_url_is_kept_when_only_redis_is_private(database_url: str) -> None:
    """DATABASE_URL's default is a private server (docs/operations.md): a URL that is given is used, and
    only the missing Redis is started — and its password is not printed."""
    root = temporary_root("scanroute-up-")
    up = _up({"DATABASE_URL": database_url}, root)
    try:
        wait_for(lambda: status(root), "children started")
        services_env = (root / ".scanroute" / "services.env").read_text()
        redis_password = (root / ".scanroute" / "credentials.env").read_text().split("REDIS_PASSWORD=")[1].strip()
        assert asyncio.run(_has_demo_org(database_url)), "no demo organisation in the DATABASE_URL given"
    finally:
        output = _stop(up)
        shutil.rmtree(root, ignore_errors=True)
    assert up.returncode == 0, output
    assert f"DATABASE_URL={database_url}\n" in services_env
    assert "started private Redis (redis://:***@127.0.0.1:" in output, output[:600]
    assert "private PostgreSQL" not in output, output[:600]
    assert redis_password not in output
    assert not (root / ".scanroute" / "pgdata").exists()


def _redis_server_on(port: int) -> int:
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue
        # redis-server retitles itself "redis-server 127.0.0.1:PORT"
        if argv and b"redis-server" in argv[0] and f":{port}".encode() in b" ".join(argv):
            return int(proc.name)
    raise AssertionError(f"no redis-server on port {port}")


def test_a_private_server_that_dies_is_restarted_and_reported(database_url: str) -> None:
    """A private server killed under the stack (the OOM killer) comes back on its port and data, as a child
    would, instead of leaving the stack degraded until `up` is restarted."""
    root = temporary_root("scanroute-up-")
    up = _up({"DATABASE_URL": database_url}, root)
    try:
        wait_for(lambda: status(root), "children started")
        redis = urlsplit(dict(line.split("=", 1) for line in
                              (root / ".scanroute" / "services.env").read_text().split())["REDIS_URL"])
        assert redis.port and redis_answers(redis.port, redis.password)
        os.kill(_redis_server_on(redis.port), signal.SIGKILL)
        wait_for(lambda: not redis_answers(redis.port or 0, redis.password), "redis gone")
        wait_for(lambda: redis_answers(redis.port or 0, redis.password), "redis back")
    finally:
        output = _stop(up)
        shutil.rmtree(root, ignore_errors=True)
    assert up.returncode == 0, output[-1500:]
    assert "warning: private Redis exited with signal SIGKILL; restarting in 0.5 s" in output, output[-1500:]
    assert "restarted private Redis" in output


def test_printed_urls_hide_the_passwords() -> None:
    assert _masked("postgresql://postgres:s3cret@127.0.0.1:5432/scanroute") == \
        "postgresql://postgres:***@127.0.0.1:5432/scanroute"
    assert _masked("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert _masked("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_postgresql_down_at_start_is_waited_for(tmp_path: Path) -> None:
    """No process exits because PostgreSQL is down at start (docs/operations.md): `up` retries with backoff,
    one line per attempt, and Ctrl-C / SIGTERM still stops it cleanly meanwhile."""
    up = _up({"DATABASE_URL": f"postgresql://postgres:nope@127.0.0.1:{free_port()}/scanroute",
              "REDIS_URL": os.environ["REDIS_URL"]}, tmp_path)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            up.wait(3)
    finally:
        output = _stop(up)
    assert up.returncode == 0 and "Traceback" not in output, output[-1500:]
    assert output.count("is not reachable") >= 2 and "retrying in" in output, output[-1500:]


@pytest.mark.parametrize("variable", ["INGEST_BATCH_SIZE=abc", "WEBHOOK_LEASE=5", "JOBS_LEASE=inf"])
def test_a_malformed_worker_variable_stops_up_before_any_child_starts(variable: str, env: dict[str, str],
                                                                       tmp_path: Path) -> None:
    """As for the edge's and the control plane's variables: "configuration error: NAME …" and exit 2, not
    "scanroute is up" and a child restarted forever."""
    name, value = variable.split("=")
    up = _up({**env, name: value}, tmp_path)
    try:
        up.wait(DEADLINE)
    finally:
        output = _stop(up)
    assert up.returncode == 2 and f"configuration error: {name}" in output, output[-1500:]
    assert "is up" not in output and not (tmp_path / ".scanroute" / "processes.json").exists()


def _up_until_ready(env: dict[str, str], cwd: Path) -> str:
    """`up` in `cwd` until it says it is up (its last line, "press Ctrl-C to stop"), then stopped; its output."""
    up = _up(env, cwd)
    assert up.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.decode(errors="replace") for line in up.stdout),
                              daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("press Ctrl-C to stop" in line for line in lines), "scanroute is up")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
        try:
            up.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        reader.join(DEADLINE)
        up.stdout.close()
    return "".join(lines)


def test_up_points_at_the_demo_key_file_only_where_it_is(env: dict[str, str]) -> None:
    """The README's first step is `KEY=$(cat .scanroute/demo_key)`. A second folder on the same DATABASE_URL
    (a teammate's checkout, a Compose PostgreSQL) finds the demo organisation's key made already: `up` must not
    send the user to a file it did not write there, but say how to make a key."""
    stores = {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "REDIS_NAMESPACE")}
    first, second = temporary_root("scanroute-demo-"), temporary_root("scanroute-demo-")
    try:
        made = _up_until_ready(stores, first)
        assert (first / ".scanroute" / "demo_key").exists(), made[-1500:]
        assert "demo API key (shown once, also saved in .scanroute/demo_key)" in made, made[-1500:]
        again = _up_until_ready(stores, second)
        assert not (second / ".scanroute" / "demo_key").exists()
    finally:
        shutil.rmtree(first, ignore_errors=True)
        shutil.rmtree(second, ignore_errors=True)
    assert "see .scanroute/demo_key" not in again, again[-1500:]
    assert "scanroute keys create --org demo" in again, again[-1500:]
