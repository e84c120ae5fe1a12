"""Deleting a group detaches its codes as any update of them would (docs/api.md: their `group_id` becomes
null; docs/security.md: Redis's rows follow the database): a new version each, written through to Redis, so
the edges answer each code's own state at once and the cache audit finds nothing to replace."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio as aioredis

from shared.keys import RedisKeys
from shared.rows import CodeRow
from tests.conftest import KeyFactory, bearer
from tests.edge.test_planted_rows import audit_walk
from tests.edge.test_scan import make_code


async def test_a_deleted_groups_codes_answer_their_own_state_and_the_audit_finds_nothing(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, database_url: str) -> None:
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/group"},
        "url_params": {"utm_campaign": "group"}})).json()
    inheriting = await make_code(api, key, group_id=group["id"])
    own = await make_code(api, key, group_id=group["id"], destination={"type": "url", "url": "https://example.com/own"})
    # Both cached by the edge with their group.
    assert (await edge.get(f"/{inheriting['slug']}")).headers["location"] == \
        "https://example.com/group?utm_campaign=group"
    assert (await edge.get(f"/{own['slug']}")).headers["location"] == "https://example.com/own?utm_campaign=group"

    assert (await api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).status_code == 204

    unconfigured = await edge.get(f"/{inheriting['slug']}")
    assert unconfigured.status_code == 404 and "location" not in unconfigured.headers
    assert (await edge.get(f"/{own['slug']}")).headers["location"] == "https://example.com/own"
    assert await audit_walk(database_url, redis, keys) == 0  # no detached code's row taken for a planted one
    for code in (inheriting, own):
        now: dict[str, Any] = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()
        assert now["group_id"] is None and now["version"] > code["version"]
        stored = CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"])))
        assert (stored.group_id, stored.version) == (None, now["version"])


async def test_a_deleted_code_of_a_deleted_group_is_not_taken_for_a_planted_row(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str, database_url: str) -> None:
    """A soft-deleted code keeps its Redis row (the edge answers it 410): deleting its group detaches it with a
    new version too, or Redis keeps the old group at the same version and the audit calls it planted."""
    key = await make_key()
    keys = RedisKeys(redis_namespace)
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/group"}})).json()
    code = await make_code(api, key, group_id=group["id"])
    assert (await api.delete(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).status_code == 204
    assert (await edge.get(f"/{code['slug']}")).status_code == 410
    stored = CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"])))
    assert stored.deleted and stored.group_id == group["id"]

    assert (await api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).status_code == 204

    assert (await edge.get(f"/{code['slug']}")).status_code == 410
    stored = CodeRow.decode(await redis.get(keys.code("qr.test", code["slug"])))
    assert stored.deleted and stored.group_id is None
    assert await audit_walk(database_url, redis, keys) == 0  # nothing planted: every row was written by us
