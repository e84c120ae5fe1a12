"""The scan journal on its own: order, torn writes, take-over of a dead process's journal, replay, its limits."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.journal import JournalFull, ScanJournal


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


async def test_a_journal_removed_by_a_starting_worker_before_its_lock_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two edge workers starting together: the second looks for dead processes' journals between the first's
    open and flock, takes the first's new (empty, unlocked) file for an orphan and removes it."""
    first = ScanJournal(tmp_path)
    second = ScanJournal(tmp_path)
    real_flock = fcntl.flock
    raced = False

    def flock_after_second_start(fd: int, operation: int) -> None:
        nonlocal raced
        if not raced:
            raced = True
            second.open()  # adopts and unlinks first's file, which nobody has locked yet
        real_flock(fd, operation)

    monkeypatch.setattr("edge.journal.fcntl.flock", flock_after_second_start)
    first.open()
    monkeypatch.setattr("edge.journal.fcntl.flock", real_flock)
    assert raced
    await first.append([b'{"n":1}'])  # acknowledged to a visitor
    crash(first)
    crash(second)

    third = ScanJournal(tmp_path)
    third.open()
    assert third.depth == 1  # the scan is on a file the next worker finds
    third.close()


async def test_a_full_journal_refuses_a_batch_and_keeps_what_it_holds(tmp_path: Path) -> None:
    journal = ScanJournal(tmp_path, limit=20)
    journal.open()
    await journal.append([b'{"n":1}', b'{"n":2}'])  # 16 bytes
    with pytest.raises(JournalFull) as refused:
        await journal.append([b'{"n":3}'])
    assert refused.value.reason == "journal_full"
    assert journal.depth == 2 and journal.size == 16 and journal.path.read_bytes() == b'{"n":1}\n{"n":2}\n'
    sent: list[bytes] = []

    async def send(events: list[bytes]) -> None:
        sent.extend(events)

    await journal.replay(send)
    await journal.append([b'{"n":3}'])  # room again once replayed
    assert sent == [b'{"n":1}', b'{"n":2}'] and journal.depth == 1
    journal.close()


async def test_a_journal_leaves_room_on_its_disk(tmp_path: Path) -> None:
    journal = ScanJournal(tmp_path, min_free=1 << 62)
    journal.open()
    with pytest.raises(JournalFull) as refused:
        await journal.append([b"{}"])
    assert refused.value.reason == "disk_full" and journal.depth == 0 and journal.path.read_bytes() == b""
    journal.close()


FILE_SIZE_LIMIT = """
import asyncio, resource, sys
from pathlib import Path
from edge.journal import JournalFull, ScanJournal

async def main() -> None:
    journal = ScanJournal(Path(sys.argv[1]))
    journal.open()
    await journal.append([b'{"n":1}', b'{"n":2}'])
    resource.setrlimit(resource.RLIMIT_FSIZE, (26, 26))  # the disk is full after 26 bytes
    try:
        await journal.append([b'{"n":3}', b'{"n":4}'])  # 10 of its 16 bytes would fit: a torn line
    except JournalFull as exc:
        print(exc.reason)
    await journal.append([b'{"a":1}'])  # 8 bytes still fit
    print(journal.depth)

asyncio.run(main())
"""


async def test_a_disk_full_mid_write_leaves_no_torn_line(tmp_path: Path) -> None:
    """What `prlimit --fsize` (or a full tmpfs) does to an edge: the write stops part-way."""
    folder = tmp_path / "journal"
    done = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT, str(folder)], capture_output=True, check=True,
                          text=True, cwd=Path(__file__).parents[2])
    assert done.stdout.split() == ["disk_full", "3"]
    (journal,) = folder.iterdir()
    assert journal.read_bytes() == b'{"n":1}\n{"n":2}\n{"a":1}\n'
