"""Folders, domains, API keys, events, usage, mint, sub-resources, upsert and Idempotency-Key."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer

ALL = ("qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write")


async def test_concurrent_upserts_of_one_url_create_one_code(api: httpx.AsyncClient, make_key: KeyFactory,
                                                             db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    body = {"destination": {"type": "url", "url": "https://example.com/spring"}, "name": "Spring"}
    responses = await asyncio.gather(*[api.post("/v1/qr-codes/upsert", headers=bearer(key), json=body)
                                       for _ in range(20)])
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await db.fetchval("SELECT count(*) FROM qr_codes") == 1
    again = await api.post("/v1/qr-codes/upsert", headers=bearer(key),
                           json={**body, "name": "Spring menu", "tags": ["menu"]})
    assert again.status_code == 200 and again.json()["name"] == "Spring menu" and again.json()["tags"] == ["menu"]


async def test_concurrent_posts_with_one_idempotency_key_create_one_code(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    headers = {**bearer(key), "Idempotency-Key": "order-42"}
    responses = await asyncio.gather(*[api.post("/v1/qr-codes", headers=headers, json={"name": "x"})
                                       for _ in range(20)])
    assert {r.status_code for r in responses} <= {201, 409}
    assert await db.fetchval("SELECT count(*) FROM qr_codes") == 1
    replay = await api.post("/v1/qr-codes", headers=headers, json={"name": "x"})
    first = next(r for r in responses if r.status_code == 201)
    assert replay.status_code == 201 and replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    other = await api.post("/v1/qr-codes", headers=headers, json={"name": "y"})
    assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"


async def test_a_response_that_cannot_be_stored_never_lets_its_key_run_twice(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis refuses to store the response (every attempt); the claim is short only to avoid a 120 s wait."""
    import redis.exceptions

    from control_plane.api import middleware

    monkeypatch.setattr(middleware, "IN_FLIGHT_TTL", 1)
    monkeypatch.setattr(middleware, "STORE_RETRY_DELAYS", (0.01,), raising=False)
    client = api._transport.app.state.control_plane.request_redis.client  # type: ignore[attr-defined]
    real_set = client.set

    async def refusing_set(name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ex") == middleware.IDEMPOTENCY_TTL:  # storing the response, after the request ran
            raise redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        return await real_set(name, value, *args, **kwargs)

    key = await make_key()
    headers = {**bearer(key), "Idempotency-Key": "order-7"}
    body = {"name": "once", "destination": {"type": "url", "url": "https://example.com/"}}
    monkeypatch.setattr(client, "set", refusing_set)
    first = await api.post("/v1/qr-codes", headers=headers, json=body)
    assert first.status_code == 201
    monkeypatch.setattr(client, "set", real_set)
    await asyncio.sleep(1.2)  # past the claim's own lifetime
    retry = await api.post("/v1/qr-codes", headers=headers, json=body)
    assert retry.status_code == 409 and retry.json()["type"].endswith("/idempotency-key-used"), retry.text
    assert await db.fetchval("SELECT count(*) FROM qr_codes") == 1


async def test_rate_limit_headers_and_429(env: dict[str, str], make_key: KeyFactory) -> None:
    settings = ControlPlaneSettings.from_env({**env, "RATE_LIMIT_BURST": "5", "RATE_LIMIT_PER_SECOND": "0.01"})
    app = create_app(settings)
    key, other = await make_key(), await make_key("globex")
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as api:
        first = await api.get("/v1/qr-codes", headers=bearer(key))
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("5", "4")
        statuses = [(await api.get("/v1/folders", headers=bearer(key))).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        limited = await api.get("/v1/folders", headers=bearer(key))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["type"] == "https://scanroute.dev/problems/rate-limited"
        assert limited.headers["ratelimit-remaining"] == "0"
        assert (await api.get("/v1/folders", headers=bearer(other))).status_code == 200


async def test_mint_creates_inheriting_children_and_counts_usage(api: httpx.AsyncClient,
                                                                 make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}})).json()
    response = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key),
                              json={"count": 12, "name_prefix": "Table ", "tags": ["fall24"]})
    assert response.status_code == 201
    minted = response.json()
    assert minted["total"] == 12 and [c["name"] for c in minted["data"]][:3] == ["Table 1", "Table 2", "Table 3"]
    assert len({c["slug"] for c in minted["data"]}) == 12
    assert all(c["destination"]["type"] is None and c["status"] is None and c["resolved"]["source"] == "group"
               for c in minted["data"])
    assert (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).json()["code_count"] == 12
    assert (await api.get("/v1/usage", headers=bearer(key))).json()["qr_generated"] == 12
    events = (await api.get("/v1/events?type=qr.created&limit=100", headers=bearer(await make_key(scopes=ALL))))
    assert events.json()["total"] == 12
    for count in (0, 10_001):
        bad = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": count})
        assert bad.status_code == 422


async def test_mint_names_stay_1_to_n_after_a_slug_collision(api: httpx.AsyncClient, make_key: KeyFactory,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from control_plane.services import mint as mint_module

    key = await make_key()
    taken = (await api.post("/v1/qr-codes", headers=bearer(key), json={"slug": "Collide"})).json()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "run"})).json()
    slugs = iter(["s000001", "s000002", taken["slug"], "s000004", "s000005", "s000006"])
    monkeypatch.setattr(mint_module, "new_slug", lambda: next(slugs))  # the third random slug is taken
    minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key),
                            json={"count": 5, "name_prefix": "Table "})
    assert minted.status_code == 201, minted.text
    data = minted.json()["data"]
    assert [c["name"] for c in data] == [f"Table {n}" for n in range(1, 6)]
    assert [c["slug"] for c in data] == ["s000001", "s000002", "s000006", "s000004", "s000005"]


async def test_a_param_key_with_a_slash_can_be_addressed_by_its_sub_resource(api: httpx.AsyncClient,
                                                                               make_key: KeyFactory) -> None:
    key = await make_key()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"url_params": {"a/b": "1"}})).json()
    base = f"/v1/qr-codes/{code['id']}/url-params"
    assert [item["key"] for item in (await api.get(base, headers=bearer(key))).json()["data"]] == ["a/b"]
    put = await api.put(f"{base}/a%2Fb", headers=bearer(key), json={"value": "2"})
    assert put.status_code == 200 and put.json()["key"] == "a/b", put.text
    assert (await api.put(f"{base}/c/d", headers=bearer(key), json={"value": "3"})).json()["key"] == "c/d"
    assert (await api.delete(f"{base}/a%2Fb", headers=bearer(key))).status_code == 204
    assert [item["key"] for item in (await api.get(base, headers=bearer(key))).json()["data"]] == ["c/d"]
    assert (await api.put(f"{base}/", headers=bearer(key), json={"value": "x"})).status_code == 422


async def test_free_plan_hard_cap(api: httpx.AsyncClient, make_key: KeyFactory,
                                  db: asyncpg.Connection[Any]) -> None:
    key = await make_key("tiny")
    await db.execute("UPDATE organisations SET plan = 'free' WHERE name = 'tiny'")
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={})).json()
    assert (await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key),
                           json={"count": 25})).status_code == 201
    over = await api.post("/v1/qr-codes", headers=bearer(key), json={})
    assert over.status_code == 402 and over.json()["type"] == "https://scanroute.dev/problems/quota-exceeded"
    usage = (await api.get("/v1/usage", headers=bearer(key))).json()
    assert (usage["plan"], usage["qr_generated"], usage["included"], usage["overage"]) == ("free", 25, 25, 0)
    test_key = await make_key("tiny", livemode=False)
    assert (await api.post("/v1/qr-codes", headers=bearer(test_key), json={})).status_code == 201


async def test_url_params_sub_resource(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}})).json()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()
    put = await api.put(f"/v1/qr-groups/{group['id']}/url-params/utm_campaign", headers=bearer(key),
                        json={"value": "fall24"})
    assert put.status_code == 200 and put.json() == {"object": "url_param", "key": "utm_campaign", "value": "fall24"}
    await api.put(f"/v1/qr-codes/{code['id']}/url-params/utm_medium", headers=bearer(key), json={"value": "table"})
    await api.put(f"/v1/qr-codes/{code['id']}/properties/table", headers=bearer(key), json={"value": "12"})
    listed = (await api.get(f"/v1/qr-codes/{code['id']}/url-params", headers=bearer(key))).json()
    assert [(i["key"], i["value"]) for i in listed["data"]] == [("utm_medium", "table")]
    resolved = (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).json()["resolved"]
    assert resolved["url"] == "https://example.com/?utm_campaign=fall24&utm_medium=table"
    assert (await api.delete(f"/v1/qr-codes/{code['id']}/url-params/utm_medium",
                             headers=bearer(key))).status_code == 204
    assert (await api.delete(f"/v1/qr-codes/{code['id']}/url-params/utm_medium",
                             headers=bearer(key))).status_code == 404
    too_long = await api.put(f"/v1/qr-codes/{code['id']}/url-params/k", headers=bearer(key), json={"value": "v" * 513})
    assert too_long.status_code == 422


async def test_group_delete_detaches_children(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}})).json()
    inheriting = (await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()
    own = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "group_id": group["id"], "destination": {"type": "url", "url": "https://own.example/"}})).json()
    assert (await api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).status_code == 204
    assert (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).status_code == 404
    after = (await api.get(f"/v1/qr-codes/{inheriting['id']}", headers=bearer(key))).json()
    assert after["group_id"] is None and after["resolved"]["url"] is None
    kept = (await api.get(f"/v1/qr-codes/{own['id']}", headers=bearer(key))).json()
    assert kept["group_id"] is None and kept["resolved"]["url"] == "https://own.example/"


async def test_soft_delete_hides_the_code(api: httpx.AsyncClient, make_key: KeyFactory,
                                          db: asyncpg.Connection[Any]) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={})).json()
    other = (await api.post("/v1/qr-groups", headers=bearer(key), json={})).json()
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()
    moved = (await api.post("/v1/qr-codes", headers=bearer(key), json={"group_id": group["id"]})).json()
    await api.patch(f"/v1/qr-codes/{moved['id']}", headers=bearer(key), json={"group_id": other["id"]})

    async def count(group_id: str) -> int:
        return int((await api.get(f"/v1/qr-groups/{group_id}", headers=bearer(key))).json()["code_count"])

    assert (await count(group["id"]), await count(other["id"])) == (1, 1)
    assert (await api.delete(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).status_code == 204
    assert await count(group["id"]) == 0
    assert (await api.get(f"/v1/qr-codes/{code['id']}", headers=bearer(key))).status_code == 404
    listed = (await api.get("/v1/qr-codes", headers=bearer(key))).json()
    assert [c["id"] for c in listed["data"]] == [moved["id"]]
    assert await db.fetchval("SELECT deleted_at IS NOT NULL FROM qr_codes WHERE id = $1", code["id"])


async def test_folders_and_list_filters(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    folder = (await api.post("/v1/folders", headers=bearer(key), json={"name": "Menus"})).json()
    assert folder["id"].startswith("fld_")
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={})).json()
    a = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "name": "Alpha", "folder_id": folder["id"], "tags": ["x"]})).json()
    b = (await api.post("/v1/qr-codes", headers=bearer(key), json={"name": "Beta", "group_id": group["id"]})).json()

    async def ids(query: str) -> list[str]:
        response = await api.get(f"/v1/qr-codes?{query}", headers=bearer(key))
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["data"]]

    assert await ids(f"folder_id={folder['id']}") == [a["id"]]
    assert await ids("tag=x") == [a["id"]]
    assert await ids(f"group_id={group['id']}") == [b["id"]]
    assert await ids("standalone=true") == [a["id"]]
    assert await ids("q=bet") == [b["id"]]
    assert await ids("sort=name") == [a["id"], b["id"]]
    assert await ids("sort=-created_at&limit=1") == [b["id"]]
    page = (await api.get("/v1/qr-codes?limit=1&offset=1", headers=bearer(key))).json()
    assert (page["total"], page["has_more"], page["limit"], page["offset"]) == (2, False, 1, 1)
    assert (await api.get("/v1/qr-codes?limit=101", headers=bearer(key))).status_code == 422
    assert (await api.get("/v1/qr-codes?sort=slug", headers=bearer(key))).status_code == 422
    assert (await api.delete(f"/v1/folders/{folder['id']}", headers=bearer(key))).status_code == 204
    assert (await api.get(f"/v1/qr-codes/{a['id']}", headers=bearer(key))).json()["folder_id"] is None


async def test_domains(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key, other = await make_key(), await make_key("globex")
    domain = await api.post("/v1/domains", headers=bearer(key), json={"hostname": "Go.Acme.com"})
    assert domain.status_code == 201 and domain.json()["hostname"] == "go.acme.com"
    assert (await api.post("/v1/domains", headers=bearer(other), json={"hostname": "go.acme.com"})).status_code == 409
    assert (await api.post("/v1/domains", headers=bearer(key), json={"hostname": "not a host"})).status_code == 422
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={"domain": "go.acme.com"})).json()
    assert code["short_url"].startswith("https://go.acme.com/")
    refused = await api.post("/v1/qr-codes", headers=bearer(other), json={"domain": "go.acme.com"})
    assert refused.status_code == 422
    busy = await api.delete(f"/v1/domains/{domain.json()['id']}", headers=bearer(key))
    assert busy.status_code == 409
    await api.delete(f"/v1/qr-codes/{code['id']}", headers=bearer(key))
    assert (await api.delete(f"/v1/domains/{domain.json()['id']}", headers=bearer(key))).status_code == 204


@pytest.mark.parametrize("hostname", ["go.acme.com:0", "go.acme.com:99999", "qr.test:443", "QR.test:8080"])
async def test_a_domain_the_edge_could_never_answer_for_is_refused(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                   hostname: str) -> None:
    """A port the edge refuses in `Host` (docs/api.md §3.4), or the default domain under a port: 422."""
    refused = await api.post("/v1/domains", headers=bearer(await make_key()), json={"hostname": hostname})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "hostname"


async def test_a_host_belongs_to_one_organisation_whatever_the_port(api: httpx.AsyncClient,
                                                                     make_key: KeyFactory) -> None:
    """Another organisation cannot take go.acme.com under a port (nor without one once it holds a port):
    clients that send the port in `Host` would reach its codes on Acme's name (docs/api.md §2.3)."""
    acme, globex = await make_key(), await make_key("globex")
    assert (await api.post("/v1/domains", headers=bearer(acme), json={"hostname": "go.acme.com"})).status_code == 201
    for hostname in ("go.acme.com:443", "GO.acme.com:8443"):
        taken = await api.post("/v1/domains", headers=bearer(globex), json={"hostname": hostname})
        assert taken.status_code == 409 and taken.json()["type"].endswith("domain-taken"), taken.text
    assert (await api.post("/v1/domains", headers=bearer(acme), json={"hostname": "links.acme.com:8443"})
            ).status_code == 201
    taken = await api.post("/v1/domains", headers=bearer(globex), json={"hostname": "links.acme.com"})
    assert taken.status_code == 409, taken.text
    # The organisation holding the host may add it under other ports, in either mode.
    assert (await api.post("/v1/domains", headers=bearer(acme), json={"hostname": "go.acme.com:8443"})
            ).status_code == 201
    test_acme = await make_key(livemode=False)
    assert (await api.post("/v1/domains", headers=bearer(test_acme), json={"hostname": "go.acme.com:9443"})
            ).status_code == 201


async def test_a_host_belongs_to_one_mode_and_moves_by_deleting_it(api: httpx.AsyncClient,
                                                                   make_key: KeyFactory) -> None:
    """The edge answers a host's codes without knowing a mode, so a host is registered in one mode: the other
    mode's keys get 409 until the mode that has it deletes it (docs/api.md §2.3)."""
    live, test = await make_key(), await make_key(livemode=False)
    created = await api.post("/v1/domains", headers=bearer(test), json={"hostname": "go.acme.com"})
    assert created.status_code == 201, created.text
    taken = await api.post("/v1/domains", headers=bearer(live), json={"hostname": "go.acme.com"})
    assert taken.status_code == 409 and taken.json()["type"].endswith("domain-taken"), taken.text
    assert (await api.delete(f"/v1/domains/{created.json()['id']}", headers=bearer(test))).status_code == 204
    moved = await api.post("/v1/domains", headers=bearer(live), json={"hostname": "go.acme.com"})
    assert moved.status_code == 201, moved.text


async def test_concurrent_claims_of_one_host_under_two_ports_leave_it_to_one_organisation(
        api: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    keys = [await make_key(f"org{i}") for i in range(6)]
    await asyncio.gather(*[api.post("/v1/domains", headers=bearer(key), json={"hostname": f"go.acme.com:{8000 + i}"})
                           for i, key in enumerate(keys)])
    assert await db.fetchval("SELECT count(DISTINCT org_id) FROM domains") == 1


@pytest.mark.parametrize("hostname", ["127.0.0.1", "10.0.0.5:8080", "192.168.1.1", "go.acme.123"])
async def test_an_address_is_no_domain(api: httpx.AsyncClient, make_key: KeyFactory, hostname: str) -> None:
    """An IPv4 literal (a name whose last label is all digits) could be the edge's own address: 422."""
    refused = await api.post("/v1/domains", headers=bearer(await make_key()), json={"hostname": hostname})
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "hostname"


async def test_api_keys_are_shown_once_and_revoked_at_once(api: httpx.AsyncClient, make_key: KeyFactory,
                                                           db: asyncpg.Connection[Any]) -> None:
    admin = await make_key(scopes=ALL)
    created = await api.post("/v1/api-keys", headers=bearer(admin), json={"name": "ci", "scopes": ["qr:read"]})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("qr_live_") and created.json()["last4"] == secret[-4:]
    listed = (await api.get("/v1/api-keys", headers=bearer(admin))).json()
    assert all("secret" not in k for k in listed["data"]) and listed["total"] == 2
    assert (await api.get("/v1/qr-codes", headers=bearer(secret))).status_code == 200
    assert (await api.delete(f"/v1/api-keys/{created.json()['id']}", headers=bearer(admin))).status_code == 204
    assert (await api.get("/v1/qr-codes", headers=bearer(secret))).status_code == 401
    narrow = await make_key(scopes=("keys:write",))
    escalate = await api.post("/v1/api-keys", headers=bearer(narrow), json={"scopes": ["qr:write"]})
    assert escalate.status_code == 422
    # No table holds a key in clear.
    dump = await db.fetchval("SELECT string_agg(t::text, ' ') FROM api_keys t")
    assert secret not in dump and admin not in dump


async def test_events_list_and_get(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key(scopes=ALL)
    code = (await api.post("/v1/qr-codes", headers=bearer(key), json={})).json()
    await api.patch(f"/v1/qr-codes/{code['id']}", headers=bearer(key), json={"name": "renamed"})
    events = (await api.get("/v1/events", headers=bearer(key))).json()
    assert [e["type"] for e in events["data"]] == ["qr.updated", "qr.created"]
    latest = events["data"][0]
    assert latest["data"]["previous_attributes"] == {"name": ""}
    assert latest["data"]["object"]["name"] == "renamed" and latest["id"].startswith("evt_")
    one = await api.get(f"/v1/events/{latest['id']}", headers=bearer(key))
    assert one.json() == latest
    other = await make_key("globex", scopes=ALL)
    assert (await api.get(f"/v1/events/{latest['id']}", headers=bearer(other))).status_code == 404


async def test_one_idempotency_key_on_another_query_string_is_another_request(api: httpx.AsyncClient,
                                                                              make_key: KeyFactory) -> None:
    """A dry-run import and then the real one under the same key: the second is refused (422), never answered
    with the dry run's job as if it had run."""
    key = await make_key()
    headers = {**bearer(key), "Content-Type": "text/csv", "Idempotency-Key": "nightly-import"}
    csv = b"name,url\nA,https://example.com/a\n"
    dry = await api.post("/v1/imports?dry_run=true", headers=headers, content=csv)
    assert dry.status_code == 202 and dry.json()["dry_run"] is True
    real = await api.post("/v1/imports", headers=headers, content=csv)
    assert real.status_code == 422, real.text
    assert (await api.post("/v1/imports?dry_run=true", headers=headers, content=csv)).json() == dry.json()


async def test_a_static_code_takes_no_url_params_through_the_sub_resource(api: httpx.AsyncClient,
                                                                          make_key: KeyFactory) -> None:
    key = await make_key()
    static = (await api.post("/v1/qr-codes", headers=bearer(key), json={
        "kind": "static", "type": "text", "content": {"text": "hi"}})).json()
    put = await api.put(f"/v1/qr-codes/{static['id']}/url-params/a", headers=bearer(key), json={"value": "b"})
    assert put.status_code == 422, put.text
    after = (await api.get(f"/v1/qr-codes/{static['id']}", headers=bearer(key))).json()
    assert after["url_params"] == {} and after["version"] == static["version"]
