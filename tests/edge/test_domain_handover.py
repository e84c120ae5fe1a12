"""A custom domain removed by one organisation and registered by another answers for the new owner only: the
first one's deleted codes leave the host with it, so they neither hold its slugs nor answer (410, recorded as
the first organisation's scans) on it (docs/api.md §2.3: "A hostname belongs to one organisation")."""

from __future__ import annotations

import secrets

import httpx
import redis.asyncio as aioredis

from tests.conftest import KeyFactory, bearer
from tests.edge.test_scan import make_code, stream_events


async def test_a_domain_given_up_and_registered_by_another_org_answers_for_the_new_org_only(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    first, second = await make_key("first-org"), await make_key("second-org")
    host = f"go{secrets.token_hex(3)}.example"
    domain = (await api.post("/v1/domains", headers=bearer(first), json={"hostname": host})).json()
    group = (await api.post("/v1/qr-groups", headers=bearer(first), json={
        "destination": {"type": "url", "url": "https://first.example/"}})).json()
    old = await make_code(api, first, domain=host, slug="menu", group_id=group["id"])
    assert (await api.delete(f"/v1/qr-codes/{old['id']}", headers=bearer(first))).status_code == 204
    assert (await edge.get("/menu", headers={"host": host})).status_code == 410  # cached as gone on the host
    seen = len(await stream_events(redis, redis_namespace))
    assert (await api.delete(f"/v1/domains/{domain['id']}", headers=bearer(first))).status_code == 204

    assert (await api.post("/v1/domains", headers=bearer(second), json={"hostname": host})).status_code == 201
    # The second organisation's own code on its own host, at the slug it prints:
    created = await api.post("/v1/qr-codes", headers=bearer(second), json={
        "domain": host, "slug": "menu", "destination": {"type": "url", "url": "https://second.example/"}})
    scan = await edge.get("/menu", headers={"host": host})
    events = (await stream_events(redis, redis_namespace))[seen:]
    first_orgs_scans = [e for e in events if e.group_id == group["id"]]
    assert (created.status_code, scan.status_code, len(first_orgs_scans)) == (201, 302, 0), (
        created.status_code, created.json().get("title"), scan.status_code,
        [(e.org_id, e.group_id, e.outcome) for e in events])
