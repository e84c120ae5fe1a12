"""The version-checked write of edge rows to Redis: an older row never replaces a newer one."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.edge_rows import RowStore
from shared.keys import RedisKeys
from shared.rows import CodeRow, Destination


def row(version: int, url: str) -> CodeRow:
    return CodeRow("qr_1", version, "org", True, None, None, Destination("url", url))


async def test_an_older_row_never_replaces_a_newer_one(redis: aioredis.Redis, redis_namespace: str) -> None:
    keys = RedisKeys(redis_namespace)
    store = RowStore(redis, keys)
    assert await store.store_code("qr.test", "a", row(2, "https://new.example/"))
    assert not await store.store_code("qr.test", "a", row(1, "https://old.example/"))
    stored = await store.store_codes([("qr.test", "a", row(1, "https://old.example/")),
                                      ("qr.test", "b", row(1, "https://b.example/")),
                                      ("qr.test", "a", row(3, "https://newer.example/"))])
    assert stored == 2
    assert CodeRow.decode(await redis.get(keys.code("qr.test", "a"))).destination.url == "https://newer.example/"
    assert CodeRow.decode(await redis.get(keys.code("qr.test", "b"))).version == 1


def test_a_code_row_reads_back_as_it_was_written() -> None:
    """What the control plane writes to Redis, the edge decodes to an equal row and encodes to the same bytes;
    the hash of the bytes it came from (for refreshes) is not part of its equality."""
    written = CodeRow("qr_1", 7, "org_1", False, "grp_1", "inactive", Destination("page", None, "pg_1"),
                      (("utm_source", "print"),), (("table", "12"),), False, '{"rules":[]}', "hash", True)
    read = CodeRow.decode(written.encode())
    assert read == written and hash(read) == hash(written) and read.source_hash != written.source_hash
    assert read.encode() == written.encode()
    assert read != row(7, "https://example.com/")
