"""Endpoints per organisation and mode are capped (lower in test mode, whose events are free)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import KeyFactory, bearer

SCOPES = ("webhooks:read", "webhooks:write")
URL = "https://93.184.215.14/hooks/scanroute"  # a public address literal: no DNS needed


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "WEBHOOK_ENDPOINTS_PER_ORG": "4", "WEBHOOK_TEST_ENDPOINTS_PER_ORG": "2"}


async def create(api: httpx.AsyncClient, key: str) -> httpx.Response:
    return await api.post("/v1/webhook-endpoints", headers=bearer(key), json={"url": URL, "events": ["*"]})


async def test_concurrent_creates_stop_at_the_cap(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    live, test = await make_key(scopes=SCOPES), await make_key(scopes=SCOPES, livemode=False)
    live_statuses = sorted([r.status_code for r in await asyncio.gather(*(create(api, live) for _ in range(7)))])
    assert live_statuses == [201] * 4 + [409] * 3
    refused = await create(api, live)
    assert refused.headers["content-type"] == "application/problem+json" and "(4)" in refused.json()["detail"]
    assert [(await create(api, test)).status_code for _ in range(3)] == [201, 201, 409]
    other_org = await make_key("globex", scopes=SCOPES)
    assert (await create(api, other_org)).status_code == 201
    first = (await api.get("/v1/webhook-endpoints", headers=bearer(live))).json()["data"][0]
    assert (await api.delete(f"/v1/webhook-endpoints/{first['id']}", headers=bearer(live))).status_code == 204
    assert (await create(api, live)).status_code == 201


async def test_the_limit_is_described_in_the_openapi_document(api: httpx.AsyncClient) -> None:
    create = (await api.get("/openapi.json")).json()["paths"]["/v1/webhook-endpoints"]["post"]
    assert "WEBHOOK_ENDPOINTS_PER_ORG" in create["description"]
    assert "webhook-endpoint-limit" in create["responses"]["409"]["description"]
