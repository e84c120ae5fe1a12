from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from control_plane.render.design import design_dict, parse_design
from control_plane.render.images import RenderCache
from control_plane.render.scannability import UnscannableDesign
from shared.keys import RedisKeys
from tests.control_plane.render.decoding import reads_as
from tests.ports import free_port

TEXT = ("The quick brown fox jumps over the lazy dog; " * 50)[:300]
DESIGN = design_dict(parse_design({"size": 2048}))


async def test_without_redis_a_download_is_still_decoded_before_it_is_served(db: asyncpg.Connection[Any]) -> None:
    unreachable = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    cache = RenderCache(db, unreachable, RedisKeys("nowhere"))  # type: ignore[arg-type]
    try:
        with pytest.raises(UnscannableDesign) as refused:
            await cache.render("0" * 32, TEXT, DESIGN, "png", 200, verify=True)
        assert refused.value.errors[0]["field"] == "size"
        assert reads_as(await cache.render("0" * 32, TEXT, DESIGN, "png", 231, verify=True), "png", TEXT)
    finally:
        await unreachable.aclose()


async def test_the_verdict_is_cached_next_to_the_image(db: asyncpg.Connection[Any], redis: aioredis.Redis,
                                                       redis_namespace: str) -> None:
    keys = RedisKeys(redis_namespace)
    cache = RenderCache(db, redis, keys)  # type: ignore[arg-type]
    await cache.render("0" * 32, TEXT, DESIGN, "webp", 231, verify=True)
    with pytest.raises(UnscannableDesign):
        await cache.render("0" * 32, TEXT, DESIGN, "webp", 200, verify=True)
    assert await redis.get(keys.readable_size("0" * 32, 231)) == b"231"
    assert await redis.get(keys.readable_size("0" * 32, 200)) == b"231"
    assert await redis.get(keys.rendered_image("0" * 32, 200, "webp")) is None  # nothing kept that does not read
