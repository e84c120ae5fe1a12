"""The edge's own Redis connections (edge/scan_stream.py): RESP written by hand, against a real Redis."""

from __future__ import annotations

import os

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from edge.scan_stream import DirectRedis, ScanStream
from shared.keys import SCAN_FIELD


def on_db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}" if url.rsplit("/", 1)[-1].isdigit() else f"{url}/{db}"


async def test_a_batch_is_stored_whole_in_order_on_the_urls_database(redis_namespace: str) -> None:
    url = on_db(os.environ["REDIS_URL"], 1)
    client = aioredis.Redis.from_url(url)
    stream = ScanStream(url, 2.0, client)
    key = f"{redis_namespace}:scans"
    events = [b'{"n":%d,"text":"\\r\\n$*"}' % n for n in range(300)] + [b"x" * 70_000]
    try:
        await stream.xadd_all(key, 0, SCAN_FIELD, events)
        await stream.xadd_all(key, 0, SCAN_FIELD, [b"last"])
        stored = [fields[SCAN_FIELD] for _, fields in await client.xrange(key)]
        assert stored == [*events, b"last"]
    finally:
        stream.close()
        await client.delete(key)
        await client.aclose()


async def test_an_error_reply_fails_its_batch_only(redis: aioredis.Redis, redis_namespace: str) -> None:
    stream = ScanStream(os.environ["REDIS_URL"], 2.0, redis)
    taken = f"{redis_namespace}:not-a-stream"
    await redis.set(taken, "a string")
    try:
        with pytest.raises(ResponseError):
            await stream.xadd_all(taken, 0, SCAN_FIELD, [b"e"])
        assert await stream.xadd_all(f"{redis_namespace}:scans", 0, SCAN_FIELD, [b"e"]) == 1
        assert await redis.xlen(f"{redis_namespace}:scans") == 1
        assert await stream.xadd_all(f"{redis_namespace}:scans", 2, SCAN_FIELD, [b"f", b"g"]) == -1  # over the limit
        assert await redis.xlen(f"{redis_namespace}:scans") == 1
    finally:
        stream.close()


async def test_a_batch_whose_lines_do_not_match_its_events_is_refused_whole(redis: aioredis.Redis,
                                                                              redis_namespace: str) -> None:
    """A batch travels as one argument, its events one per line: an event holding a newline (which orjson never
    writes) must not be split into two scans, nor half of a batch be stored."""
    stream = ScanStream(os.environ["REDIS_URL"], 2.0, redis)
    key = f"{redis_namespace}:scans"
    try:
        with pytest.raises(ResponseError):
            await stream.xadd_all(key, 0, SCAN_FIELD, [b'{"n":1}', b'{"n":2}\n{"n":3}'])
        assert await redis.xlen(key) == 0
        assert await stream.xadd_all(key, 0, SCAN_FIELD, [b'{"n":1}', b'{"n":2}']) == 2
    finally:
        stream.close()


async def test_a_wrong_password_is_a_connection_failure(redis: aioredis.Redis) -> None:
    url = os.environ["REDIS_URL"]
    if "@" not in url:
        pytest.skip("this Redis has no password")
    scheme, rest = url.split("://", 1)
    stream = ScanStream(f"{scheme}://:wrong@{rest.split('@', 1)[1]}", 2.0, redis)
    with pytest.raises(RedisConnectionError):  # AuthenticationError is one
        await stream.xadd_all("never", 0, SCAN_FIELD, [b"e"])


async def test_the_row_readers_mget_answers_each_key_in_order_on_the_urls_database(redis_namespace: str) -> None:
    """The batch read of missing code rows: values as stored (any bytes), None for a key that holds nothing."""
    url = on_db(os.environ["REDIS_URL"], 1)
    client = aioredis.Redis.from_url(url)
    reader = DirectRedis(url, 2.0, client)
    keys = [f"{redis_namespace}:code:{n}" for n in range(100)]
    stored = {key: b'{"id":"qr_%d","text":"\r\n$*"}' % n for n, key in enumerate(keys) if n % 3}
    try:
        await client.mset(stored)
        assert await reader.mget(keys) == [stored.get(key) for key in keys]
        assert await reader.mget([keys[1]]) == [stored[keys[1]]]
    finally:
        reader.close()
        await client.delete(*keys)
        await client.aclose()
