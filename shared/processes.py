"""Child processes that die with their parent, so no crash leaves a server listening."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int, umask: int | None = None) -> Any:
    def set_parent_death_signal() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if umask is not None:
            os.umask(umask)

    return set_parent_death_signal


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask for `sig` when this process's parent dies (e.g. `make` killed while `scanroute up` runs)."""
    _die_with_parent(sig)()


def spawn(argv: Sequence[str], *, death_signal: int = signal.SIGTERM, umask: int | None = None,
          **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen whose child gets `death_signal` if this process dies, even by SIGKILL (Linux); `umask` applies
    to the files the child creates (0o077: owner-only)."""
    return subprocess.Popen(list(argv), preexec_fn=_die_with_parent(death_signal, umask), **kwargs)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal, wait up to `timeout`, then kill. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: workers finish what is in flight, then return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Backoff:
    """The waits of a worker loop while a store is unreachable: `first` seconds, doubling up to `longest`,
    and `first` again after a success. A worker waits; it never exits because PostgreSQL or Redis is down."""

    def __init__(self, first: float = 0.1, longest: float = 5.0) -> None:
        self.first = self.seconds = first
        self.longest = longest

    def reset(self) -> None:
        self.seconds = self.first

    def next_delay(self) -> float:
        """The wait due now; the next one doubles (for callers without an event loop)."""
        delay, self.seconds = self.seconds, min(self.seconds * 2, self.longest)
        return delay

    async def wait(self, stop: asyncio.Event, log: logging.Logger, what: str, exc: BaseException) -> None:
        log.warning("%s, retrying in %.1fs: %r", what, self.seconds, exc)
        await pause(stop, self.next_delay())
