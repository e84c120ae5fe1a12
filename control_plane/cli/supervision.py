"""Keeping `scanroute up`'s children running: a child that exits is restarted with backoff, the others
keep serving, and only Ctrl-C / SIGTERM stops the stack (docs/operations.md, "Supervision").

A crashed analytics worker must never take redirects down with it. Every exit and restart is reported on
the supervisor's output, and `.scanroute/processes.json` holds each child's pid and restart count for
scripts and monitoring; a child that keeps crashing is reported loudly each time, never dropped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.processes import spawn

FIRST_BACKOFF = 0.5  # seconds before the first restart of a child that exited
MAX_BACKOFF = 30.0  # seconds; the delay doubles per consecutive quick exit up to this
STABLE_AFTER = 60.0  # seconds of uptime after which an exit counts as a first failure again
CRASH_LOOP_EXITS = 5  # exits within CRASH_LOOP_WINDOW seconds that make a crash loop
CRASH_LOOP_WINDOW = 60.0


@dataclass
class Child:
    kind: str
    argv: Sequence[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    quick_exits: int = 0  # consecutive exits within STABLE_AFTER of starting
    last_exit: int | None = None
    exits: deque[float] = field(default_factory=lambda: deque(maxlen=CRASH_LOOP_EXITS))
    pass_fds: tuple[int, ...] = ()  # descriptors each start inherits (the edge's listening socket)
    stop_timeout: float = 15.0  # seconds from SIGTERM to SIGKILL: longer than the child's own drain deadline

    def start(self, now: float) -> None:
        self.process = spawn(list(self.argv), env=self.env, pass_fds=self.pass_fds)
        self.started_at, self.restart_at = now, None

    def backoff(self) -> float:
        return float(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, self.quick_exits - 1)))


class Supervisor:
    def __init__(self, children: Sequence[Child], say: Callable[[str], None], status_file: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = list(children)
        self.say = say
        self.status_file = status_file
        self.clock = clock

    def start(self) -> None:
        now = self.clock()
        for child in self.children:
            child.start(now)
        self.write_status()

    def check(self) -> None:
        """Notice exits and start what is due; call this a few times a second."""
        now = self.clock()
        changed = False
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._exited(child, now)
                changed = True
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start(now)
                self.say(f"restarted {child.kind} (pid {child.process.pid if child.process else '?'}, "
                         f"restart {child.restarts})")
                changed = True
        if changed:
            self.write_status()

    def _exited(self, child: Child, now: float) -> None:
        assert child.process is not None
        child.last_exit = child.process.returncode
        child.process = None
        child.quick_exits = child.quick_exits + 1 if now - child.started_at < STABLE_AFTER else 1
        child.exits.append(now)
        delay = child.backoff()
        child.restart_at = now + delay
        self.say(f"warning: {child.kind} exited with {describe_exit(child.last_exit)}; restarting in {delay:g} s "
                 f"(restarts so far: {child.restarts})")
        # Five exits within a minute start it; from then on every exit that came before the child had run
        # for STABLE_AFTER is one more (once the delay reaches MAX_BACKOFF, five exits span over a minute).
        burst = len(child.exits) == CRASH_LOOP_EXITS and now - child.exits[0] <= CRASH_LOOP_WINDOW
        if burst or child.quick_exits >= CRASH_LOOP_EXITS:
            self.say(f"ERROR: {child.kind} keeps crashing: {child.quick_exits} exits in a row within "
                     f"{STABLE_AFTER:g} s of starting (last: {describe_exit(child.last_exit)}); still retrying every "
                     f"{delay:g} s — its own output above says why")

    def stop(self) -> None:
        """SIGTERM to every child at once; each gets its own `stop_timeout` to finish what it has in hand
        (docs/operations.md, "Stopping") before SIGKILL. The stack is down within the longest, not the sum."""
        running = []
        for child in self.children:
            child.restart_at = None
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                running.append(child)
        signalled = time.monotonic()
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.0, signalled + child.stop_timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.status_file.unlink(missing_ok=True)

    def write_status(self) -> None:
        status = {c.kind: {"pid": c.process.pid if c.process else None, "restarts": c.restarts,
                           "last_exit": c.last_exit, "state": "running" if c.process else "restarting"}
                  for c in self.children}
        partial = self.status_file.with_suffix(".tmp")
        partial.write_text(json.dumps(status, indent=1) + "\n")
        os.replace(partial, self.status_file)


def describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"signal {signal.Signals(-returncode).name}"
    return f"code {returncode}"
