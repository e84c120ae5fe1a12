"""Idempotent replays: only to the same, still valid key; no secret in plain text in the replay store."""

from __future__ import annotations

import httpx
import redis.asyncio as aioredis

from tests.conftest import KeyFactory, bearer

ALL = ("qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write")


async def stored_values(redis: aioredis.Redis, namespace: str) -> bytes:
    keys = [k async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]
    values = [await redis.get(k) for k in keys if await redis.type(k) == b"string"]
    return b" ".join(v for v in values if v)


async def test_replay_repeats_the_response_but_redis_never_holds_the_secret(
        api: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis, redis_namespace: str) -> None:
    admin = await make_key(scopes=ALL)
    headers = {**bearer(admin), "Idempotency-Key": "new-ci-key"}
    first = await api.post("/v1/api-keys", headers=headers, json={"name": "ci", "scopes": ["qr:read"]})
    hook = await api.post("/v1/webhook-endpoints", headers={**bearer(admin), "Idempotency-Key": "hook"},
                          json={"url": "https://93.184.215.14/hooks/x", "events": ["*"]})
    assert first.status_code == 201 and hook.status_code == 201
    stored = await stored_values(redis, redis_namespace)
    for secret in (first.json()["secret"], hook.json()["secret"], admin):
        assert secret.encode() not in stored
    replay = await api.post("/v1/api-keys", headers=headers, json={"name": "ci", "scopes": ["qr:read"]})
    assert replay.status_code == 201 and replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    # A response holding a secret is kept by no cache, the browser's included (docs/api.md §2.4).
    for response in (first, hook, replay):
        assert response.headers["cache-control"] == "no-store", response.headers


async def test_no_replay_after_the_key_is_revoked(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    admin = await make_key(scopes=ALL)
    parent = (await api.post("/v1/api-keys", headers=bearer(admin), json={"scopes": ["keys:write"]})).json()
    headers = {**bearer(parent["secret"]), "Idempotency-Key": "child"}
    child = await api.post("/v1/api-keys", headers=headers, json={"scopes": ["keys:write"]})
    assert child.status_code == 201
    assert (await api.delete(f"/v1/api-keys/{parent['id']}", headers=bearer(admin))).status_code == 204
    replay = await api.post("/v1/api-keys", headers=headers, json={"scopes": ["keys:write"]})
    assert replay.status_code == 401
    assert child.json()["secret"] not in replay.text


async def test_another_key_does_not_get_the_replay(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    first_key, second_key = await make_key(scopes=ALL), await make_key(scopes=ALL)
    first = await api.post("/v1/api-keys", headers={**bearer(first_key), "Idempotency-Key": "k"},
                           json={"scopes": ["qr:read"]})
    second = await api.post("/v1/api-keys", headers={**bearer(second_key), "Idempotency-Key": "k"},
                            json={"scopes": ["qr:read"]})
    assert first.status_code == second.status_code == 201
    assert first.json()["secret"] != second.json()["secret"]
    assert "idempotent-replayed" not in second.headers


async def test_a_key_revokes_only_keys_whose_scopes_it_holds(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    admin = await make_key(scopes=ALL)
    full = (await api.post("/v1/api-keys", headers=bearer(admin), json={"scopes": list(ALL)})).json()
    narrow = (await api.post("/v1/api-keys", headers=bearer(admin),
                             json={"scopes": ["keys:write", "qr:read"]})).json()
    reader = (await api.post("/v1/api-keys", headers=bearer(admin), json={"scopes": ["qr:read"]})).json()
    refused = await api.delete(f"/v1/api-keys/{full['id']}", headers=bearer(narrow["secret"]))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await api.get("/v1/qr-codes", headers=bearer(full["secret"]))).status_code == 200
    assert (await api.delete(f"/v1/api-keys/{reader['id']}", headers=bearer(narrow["secret"]))).status_code == 204
    assert (await api.get("/v1/qr-codes", headers=bearer(reader["secret"]))).status_code == 401
