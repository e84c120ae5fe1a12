"""The scan journal on its own: order, torn writes, take-over of a dead process's journal, replay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.journal import ScanJournal


def crash(journal: ScanJournal) -> None:
    """What `kill -9` leaves: the file stays and its lock is released with the process's descriptors."""
    os.close(journal._fd)


async def test_a_dead_processs_journal_is_taken_over_and_replayed_in_order(tmp_path: Path) -> None:
    first = ScanJournal(tmp_path)
    first.open()
    await first.append([b'{"n":1}', b'{"n":2}'])
    await first.append([b'{"n":3}'])
    with open(first.path, "ab") as file:
        file.write(b'{"n":4, "torn')  # the process died in the middle of a write nobody was answered for
    crash(first)

    second = ScanJournal(tmp_path)
    second.open()
    assert second.depth == 3 and not first.path.exists()
    sent: list[bytes] = []

    async def send(events: list[bytes]) -> None:
        sent.extend(events)

    await second.replay(send)
    assert sent == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert second.depth == 0 and second.path.stat().st_size == 0
    second.close()
    assert list(tmp_path.iterdir()) == []


async def test_a_live_processs_journal_is_left_alone(tmp_path: Path) -> None:
    alive = ScanJournal(tmp_path)
    alive.open()
    await alive.append([b"{}"])
    other = ScanJournal(tmp_path)
    other.open()
    assert other.depth == 0 and alive.path.exists()
    other.close()
    alive.close()
    assert alive.path.exists()  # not replayed yet: kept for the next edge process


async def test_a_failed_replay_keeps_every_event(tmp_path: Path) -> None:
    journal = ScanJournal(tmp_path)
    journal.open()
    await journal.append([b"a", b"b"])

    async def broken(events: list[bytes]) -> None:
        raise ConnectionError("Redis went away again")

    with pytest.raises(ConnectionError):
        await journal.replay(broken)
    assert journal.depth == 2
    sent: list[bytes] = []

    async def send(events: list[bytes]) -> None:
        sent.extend(events)

    await journal.replay(send)
    assert sent == [b"a", b"b"]
    journal.close()
