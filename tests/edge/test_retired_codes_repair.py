"""A domain deleted while Redis was unreachable: its deleted codes leave the host (their `domain` renamed
`deleted:…`, a new `version` each, no event), and once Redis is back and the cache sync has caught up, their
old rows are gone from Redis as if the delete's write-through had reached it — the host's scans of their
slugs answer 404, as docs/api.md §2.3 says (docs/freshness.md, "The cache sync's cursor"). Before, Redis kept
the old rows under `{host}:{slug}` until the cache audit happened on them: 410 for a code deleted earlier, and
a 302 to its destination for one deleted during the same outage."""

from __future__ import annotations

import asyncio
import secrets
import time

import redis.asyncio as aioredis

from shared.database import create_pool
from shared.keys import RedisKeys
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import control_plane, edge_client, repair
from tests.edge.private_redis import PrivateRedis
from tests.edge.test_scan import make_code

READY_TIMEOUT = 15.0  # seconds for a started edge to trust Redis


async def test_codes_of_a_domain_deleted_while_redis_was_down_leave_its_host_in_redis_too(
        private_env: dict[str, str], private_redis: PrivateRedis, make_key: KeyFactory) -> None:
    key = await make_key()
    keys = RedisKeys(private_env["REDIS_NAMESPACE"])
    host = f"go{secrets.token_hex(3)}.example"
    db = await create_pool(private_env["DATABASE_URL"], min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
    try:
        async with control_plane(private_env) as api:
            domain = (await api.post("/v1/domains", headers=bearer(key), json={"hostname": host})).json()
            earlier = await make_code(api, key, domain=host, destination={"type": "url", "url": "https://e.example/"})
            during = await make_code(api, key, domain=host, destination={"type": "url", "url": "https://d.example/"})
            assert (await api.delete(f"/v1/qr-codes/{earlier['id']}", headers=bearer(key))).status_code == 204
            # A live code keeps its domain: the delete is refused and changes nothing (docs/api.md §2.3).
            refused = await api.delete(f"/v1/domains/{domain['id']}", headers=bearer(key))
            assert refused.status_code == 409 and refused.json()["type"].endswith("/domain-in-use"), refused.text
            await repair(private_env, caught_up=True)
            async with edge_client(private_env) as (app, edge):
                deadline = time.monotonic() + READY_TIMEOUT
                while not app.link.rows_readable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                assert [(await edge.get(f"/{code['slug']}", headers={"host": host})).status_code
                        for code in (earlier, during)] == [410, 302]
            for code in (earlier, during):
                assert await redis.exists(keys.code(host, code["slug"]))

            await asyncio.to_thread(private_redis.stop)  # keeps its data (append-only file)
            assert (await api.delete(f"/v1/qr-codes/{during['id']}", headers=bearer(key))).status_code == 204
            assert (await api.delete(f"/v1/domains/{domain['id']}", headers=bearer(key))).status_code == 204
            # A later event, so that "caught up" below means past the domain's delete, which records none.
            await make_code(api, key, destination={"type": "url", "url": "https://later.example/"})
            await asyncio.to_thread(private_redis.start)
            await redis.aclose()
            redis = aioredis.Redis.from_url(private_env["REDIS_URL"])
            await repair(private_env, caught_up=True)  # the cache sync re-applies what changed, clears the mark
            assert await db.fetchval("SELECT pending_through FROM cache_repair") == 0

            async with edge_client(private_env) as (app, edge):  # an edge trusting the repaired Redis
                deadline = time.monotonic() + READY_TIMEOUT
                while not app.link.rows_readable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                answers = [(await edge.get(f"/{code['slug']}", headers={"host": host})).status_code
                           for code in (earlier, during)]
                assert answers == [404, 404]  # before: 410 and 302 (Redis's old rows)
            # As had Redis been up: no row of these codes under any address (the audit not involved).
            retired = await db.fetch("SELECT domain, slug FROM qr_codes WHERE id = ANY($1)",
                                     [earlier["id"], during["id"]])
            assert {r["domain"] for r in retired} == {f"deleted:{domain['id']}:{host}"}
            for address in [(host, code["slug"]) for code in (earlier, during)] + \
                    [(r["domain"], r["slug"]) for r in retired]:
                assert await redis.get(keys.code(*address)) is None, address
    finally:
        await redis.aclose()
        await db.close()
