"""Scan batches in flight together (edge/recorder.py, docs/edge.md "Recording"): each batch leaves as soon as its
loop turn ends, up to MAX_IN_FLIGHT unacknowledged at once on the recorder's connection; the stream keeps the
order the scans were submitted in, every scan is answered only after its batch is acknowledged, and a lost
connection sends the batches in flight to the journal, in order, each scan stored once in the end."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import redis.asyncio as aioredis

from edge.app import EdgeApp
from edge.recorder import MAX_IN_FLIGHT
from shared.keys import SCAN_FIELD
from tests.conftest import KeyFactory
from tests.edge.test_scan import make_code


async def _until(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def _stream(redis: aioredis.Redis, app: EdgeApp) -> list[bytes]:
    return [fields[SCAN_FIELD] for _, fields in await redis.xrange(app.recorder.stream)]


async def _submit_in_turns(app: EdgeApp, turns: int, per_turn: int) -> list[tuple[bytes, BaseException | None]]:
    """`turns` batches of `per_turn` scans, one batch per loop turn; returns the callbacks' record."""
    told: list[tuple[bytes, BaseException | None]] = []
    for turn in range(turns):
        for n in range(per_turn):
            event = b"%d-%d" % (turn, n)
            app.recorder.submit(event, lambda error, event=event: told.append((event, error)))
        await asyncio.sleep(0)  # the loop turn ends: this batch leaves
    return told


async def test_batches_in_flight_are_acknowledged_before_their_scans_are_told_and_kept_in_order(
        edge_app: EdgeApp, redis: aioredis.Redis) -> None:
    await edge_app.recorder.record(b"first")  # the recorder's connection is open
    await redis.execute_command("CLIENT", "PAUSE", "400", "WRITE")  # no batch is acknowledged meanwhile
    turns = MAX_IN_FLIGHT + 2
    told = await _submit_in_turns(edge_app, turns, 3)
    assert edge_app.recorder._in_flight == MAX_IN_FLIGHT  # the bound holds; the rest wait for an acknowledgement
    assert told == []  # nothing is answered before Redis has it
    await _until(lambda: len(told) == 3 * turns)
    submitted = [b"%d-%d" % (t, n) for t in range(turns) for n in range(3)]
    assert told == [(event, None) for event in submitted]
    assert await _stream(redis, edge_app) == [b"first", *submitted]


async def test_a_lost_connection_journals_the_batches_in_flight_and_stores_each_scan_once(
        edge_app: EdgeApp, redis: aioredis.Redis) -> None:
    await edge_app.recorder.record(b"first")
    await redis.execute_command("CLIENT", "PAUSE", "300", "WRITE")
    told = await _submit_in_turns(edge_app, 3, 2)
    assert edge_app.recorder._in_flight == 3
    connection = edge_app.scan_stream._connection
    assert connection is not None
    connection.close()  # the batches' replies are lost; whether Redis ran them is unknown
    await _until(lambda: len(told) == 6)
    submitted = [b"%d-%d" % (t, n) for t in range(3) for n in range(2)]
    assert sorted(told) == sorted((event, None) for event in submitted)  # journaled: stored, answered
    assert not edge_app.link.up and edge_app.journal.depth == 6
    edge_app.link.mark_up()  # as the invalidation follower's probe does: the journal is replayed
    await _until(lambda: not edge_app.journal.depth)
    assert edge_app.journal.depth == 0
    stored = await _stream(redis, edge_app)
    assert sorted(stored) == sorted([b"first", *submitted])


@pytest.mark.parametrize("scans", [200])
async def test_concurrent_scans_are_each_recorded_once_before_their_answer(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory,
        redis: aioredis.Redis, scans: int) -> None:
    key = await make_key()
    code = await make_code(api, key, destination={"type": "url", "url": "https://example.com/"})
    assert (await edge.get(f"/{code['slug']}")).status_code == 302  # cached: the rest are answered without a task
    await redis.delete(edge_app.recorder.stream)
    batches: list[int] = []
    sent = edge_app.recorder.on_batch

    def on_batch(size: int) -> None:
        batches.append(size)
        sent(size)

    edge_app.recorder.on_batch = on_batch
    stream_lengths: list[int] = []

    lengths = asyncio.Semaphore(8)  # the test's own Redis client has a bounded pool

    async def scan(n: int) -> None:
        response = await edge.get(f"/{code['slug']}?n={n}")
        assert response.status_code == 302
        async with lengths:
            stream_lengths.append(await redis.xlen(edge_app.recorder.stream))

    await asyncio.gather(*(scan(n) for n in range(scans)))
    assert sum(batches) == scans
    assert await redis.xlen(edge_app.recorder.stream) == scans
    # Answered after being stored: when the n-th answer arrived, at least n scans were in the stream.
    assert all(length >= n + 1 for n, length in enumerate(sorted(stream_lengths)))
