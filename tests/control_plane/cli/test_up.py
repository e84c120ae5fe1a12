"""`scanroute up` under a kill -9 of a worker: it is restarted, redirects never stop, Ctrl-C stops all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
