"""A child that exits is restarted with backoff and reported; the others keep running; crash loops are loud."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from control_plane.cli.supervision import CRASH_LOOP_EXITS, MAX_BACKOFF, Child, Supervisor
from control_plane.cli.supervisor import _supervisor
from control_plane.webhooks.dispatcher import SHUTDOWN_RECORD_S
from shared.settings import ControlPlaneSettings, EdgeSettings, IngestSettings, JobSettings, WebhookSettings

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_exit(child: Child) -> None:
    assert child.process is not None
    child.process.wait(30)


def test_a_killed_child_is_restarted_and_the_others_keep_running(tmp_path: Path) -> None:
    lines: list[str] = []
    clock = Clock()
    ingest, edge = Child("ingest", SLEEPER, dict(os.environ)), Child("edge", SLEEPER, dict(os.environ))
    supervisor = Supervisor([ingest, edge], lines.append, tmp_path / "processes.json", clock)
    supervisor.start()
    try:
        assert ingest.process is not None and edge.process is not None
        first_ingest, edge_pid = ingest.process.pid, edge.process.pid
        os.kill(first_ingest, signal.SIGKILL)
        wait_exit(ingest)
        supervisor.check()
        assert any("ingest exited with signal SIGKILL; restarting in 0.5 s" in line for line in lines)
        status = json.loads((tmp_path / "processes.json").read_text())
        assert status["ingest"]["state"] == "restarting"
        clock.now += 0.5
        supervisor.check()
        status = json.loads((tmp_path / "processes.json").read_text())
        assert status["ingest"]["restarts"] == 1 and status["ingest"]["pid"] not in (None, first_ingest)
        assert status["edge"] == {"pid": edge_pid, "restarts": 0, "last_exit": None, "state": "running"}
        assert edge.process.poll() is None
    finally:
        supervisor.stop()
    assert ingest.process is not None and ingest.process.poll() is not None and edge.process.poll() is not None
    assert not (tmp_path / "processes.json").exists()


def test_a_crash_loop_backs_off_and_is_reported_loudly_but_never_dropped(tmp_path: Path) -> None:
    lines: list[str] = []
    clock = Clock()
    crasher = Child("webhooks", CRASHER, dict(os.environ))
    supervisor = Supervisor([crasher], lines.append, tmp_path / "processes.json", clock)
    supervisor.start()
    delays = []
    try:
        for _ in range(CRASH_LOOP_EXITS + 4):
            wait_exit(crasher)
            supervisor.check()
            assert crasher.restart_at is not None
            delays.append(crasher.restart_at - clock.now)
            clock.now = crasher.restart_at
            supervisor.check()
            assert crasher.process is not None  # restarted, never given up on
    finally:
        supervisor.stop()
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and delays[-1] == MAX_BACKOFF
    assert any(line.startswith("ERROR: webhooks keeps crashing") for line in lines)
    assert crasher.restarts == CRASH_LOOP_EXITS + 4


def test_a_crash_loop_is_reported_at_every_further_exit_until_the_child_stays_up(tmp_path: Path) -> None:
    """docs/operations.md: the ERROR line comes again at every further exit — also once the delay has reached
    MAX_BACKOFF, when five exits no longer fit in a minute."""
    lines: list[str] = []
    clock = Clock()
    crasher = Child("webhooks", CRASHER, dict(os.environ))
    supervisor = Supervisor([crasher], lines.append, tmp_path / "processes.json", clock)
    supervisor.start()
    silent = []
    try:
        for exit_number in range(1, CRASH_LOOP_EXITS + 8):
            wait_exit(crasher)
            before = len(lines)
            supervisor.check()
            if exit_number >= CRASH_LOOP_EXITS and not any(line.startswith("ERROR:") for line in lines[before:]):
                silent.append(exit_number)
            assert crasher.restart_at is not None
            clock.now = crasher.restart_at
            supervisor.check()
        clock.now += 3600  # then it stays up: its next exit is a first failure again, and quiet
        assert crasher.process is not None
        wait_exit(crasher)
        before = len(lines)
        supervisor.check()
        assert not any(line.startswith("ERROR:") for line in lines[before:])
    finally:
        supervisor.stop()
    assert silent == []


def test_a_child_that_ran_for_a_while_restarts_quickly_again(tmp_path: Path) -> None:
    clock = Clock()
    child = Child("ingest", SLEEPER, dict(os.environ))
    supervisor = Supervisor([child], lambda line: None, tmp_path / "processes.json", clock)
    supervisor.start()
    try:
        for _ in range(3):  # three quick crashes: backoff grows
            assert child.process is not None
            child.process.kill()
            wait_exit(child)
            supervisor.check()
            clock.now = child.restart_at or clock.now
            supervisor.check()
        clock.now += 3600  # then an hour of service
        assert child.process is not None
        child.process.kill()
        wait_exit(child)
        supervisor.check()
        assert child.restart_at == clock.now + 0.5
    finally:
        supervisor.stop()


def draining_child(kind: str, ready: Path, stop_timeout: float) -> Child:
    """A child that takes 4 s to stop after SIGTERM, and then exits 0, as a draining dispatcher does."""
    script = ("import pathlib, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(4), sys.exit(0)))\n"
              f"pathlib.Path({str(ready)!r}).touch()\n"
              "time.sleep(120)\n")
    return Child(kind, [sys.executable, "-c", script], dict(os.environ), stop_timeout=stop_timeout)


def test_each_child_gets_its_own_time_to_stop_and_all_stop_together(tmp_path: Path) -> None:
    patient = draining_child("webhooks", tmp_path / "webhooks.ready", stop_timeout=60.0)
    hasty = draining_child("ingest", tmp_path / "ingest.ready", stop_timeout=0.5)
    supervisor = Supervisor([hasty, patient], [].append, tmp_path / "processes.json")
    supervisor.start()
    for ready in (tmp_path / "webhooks.ready", tmp_path / "ingest.ready"):
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.05)
        assert ready.exists()
    supervisor.stop()
    assert patient.process is not None and patient.process.returncode == 0  # drained, not killed
    assert hasty.process is not None and hasty.process.returncode == -signal.SIGKILL


def test_scanroute_up_waits_longer_than_each_child_s_own_drain_deadline() -> None:
    """`up` killed every child 15 s after SIGTERM: a dispatcher records what it sent for up to 25 s."""
    settings = {"control-plane": ControlPlaneSettings, "edge": EdgeSettings, "ingest": IngestSettings,
                "webhooks": WebhookSettings, "jobs": JobSettings}
    child_env = {"DATABASE_URL": "postgresql://scanroute@127.0.0.1:5432/scanroute", "REDIS_URL": "redis://127.0.0.1",
                 "EDGE_DRAIN_TIMEOUT": "30", "SCAN_HASH_SECRET": "a-secret-of-32-characters-or-more"}
    with socket.socket() as edge_socket:
        children = {child.kind: child for child in _supervisor(child_env, edge_socket).children}
    for kind, kind_settings in settings.items():
        deadline = kind_settings.from_env(child_env).stop_deadline
        assert children[kind].stop_timeout > deadline, (kind, children[kind].stop_timeout, deadline)
    assert children["webhooks"].stop_timeout > WebhookSettings.from_env(child_env).delivery_timeout + \
        SHUTDOWN_RECORD_S
