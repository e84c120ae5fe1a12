"""docs/rules.md through the real edge: rules, split, validity and passwords set with the API."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from edge.app import EdgeApp
from edge.lookup import PreparedScan
from shared.passwords import PasswordChecks
from shared.settings import EdgeSettings
from shared.throttle import KeyedThrottle
from tests.conftest import KeyFactory, bearer
from tests.edge.conftest import address, protocol_server
from tests.edge.test_scan import stream_events

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Mobile/15E148 Safari/604.1")
WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
           "Safari/537.36")
DEFAULT = "https://example.com/default"
HIT = "https://example.com/hit"
EDGE_IP = "203.0.113.7"  # the address the `edge` fixture's client scans from


@pytest.fixture
def edge_settings(env: dict[str, str]) -> EdgeSettings:
    # Both servers' client is 127.0.0.1: as a trusted proxy (a CDN), it names the visitor's address and country.
    return EdgeSettings.from_env({**env, "TRUSTED_COUNTRY_HEADER": "CF-IPCountry", "TRUSTED_PROXIES": "127.0.0.1/32"})


_protocol_urls: dict[int, str] = {}  # id(edge app) → its protocol server, for the tests run on that server


@pytest.fixture(autouse=True)
async def served(edge_app: EdgeApp, server_kind: str) -> AsyncIterator[None]:
    """Every test here runs on both servers: the protocol server (the default) and the ASGI app."""
    if server_kind == "asgi":
        yield
        return
    async with protocol_server(edge_app) as server:
        host, port = address(server)
        _protocol_urls[id(edge_app)] = f"http://{host}:{port}"
        try:
            yield
        finally:
            del _protocol_urls[id(edge_app)]


def client_of(app: EdgeApp, ip: str = EDGE_IP) -> httpx.AsyncClient:
    """A client of the server the test runs on, scanning from `ip`."""
    if id(app) in _protocol_urls:
        return httpx.AsyncClient(base_url=_protocol_urls[id(app)], headers={"host": "qr.test", "x-forwarded-for": ip})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 5000)),
                             base_url="http://qr.test", headers={"x-forwarded-for": ip})


def url(target: str) -> dict[str, str]:
    return {"type": "url", "url": target}


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def create(api: httpx.AsyncClient, key: str, path: str = "/v1/qr-codes", **body: Any) -> dict[str, Any]:
    response = await api.post(path, headers=bearer(key), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def patch(api: httpx.AsyncClient, key: str, path: str, **body: Any) -> dict[str, Any]:
    response = await api.patch(path, headers=bearer(key), json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def scan(app: EdgeApp, slug: str, *, ip: str = EDGE_IP, query: str = "", now: float | None = None,
               method: str = "GET", data: dict[str, str] | None = None, **headers: str) -> httpx.Response:
    if now is not None:
        app.clock = lambda: now
    async with client_of(app, ip) as client:
        return await client.request(method, f"/{slug}{query}", data=data,
                                    headers={k.replace("_", "-"): v for k, v in headers.items()})


def answer(response: httpx.Response) -> str | int:
    return response.headers["location"] if response.status_code == 302 else response.status_code


LUNCH = {"weekday": ["mon", "tue", "wed", "thu", "fri"], "time": {"from": "11:30", "to": "14:30"},
         "timezone": "Europe/Berlin"}
NIGHT = {"weekday": ["sat"], "time": {"from": "22:00", "to": "06:00"}, "timezone": "Europe/Berlin"}


@pytest.mark.parametrize(("condition", "matching", "other"), [
    ({"device": ["ios"]}, {"user_agent": IPHONE}, {"user_agent": WINDOWS}),
    ({"browser": ["chrome"]}, {"user_agent": WINDOWS}, {"user_agent": IPHONE}),
    ({"language": ["de"]}, {"accept_language": "de-AT,en;q=0.3"}, {"accept_language": "en-US,de;q=0.3"}),
    ({"country": ["DE", "AT"]}, {"cf_ipcountry": "AT"}, {"cf_ipcountry": "FR"}),
    ({"query": {"src": "flyer"}}, {"query": "?src=flyer&qr=1"}, {"query": "?src=poster&qr=1"}),
    ({"ip": ["198.51.100.0/24"]}, {"ip": "198.51.100.20"}, {"ip": EDGE_IP}),
    ({"after": "2026-06-01T00:00:00Z"}, {"now": at("2026-06-01T00:00:00Z")}, {"now": at("2026-05-31T23:59:00Z")}),
    ({"before": "2026-06-01T00:00:00Z"}, {"now": at("2026-05-31T23:59:00Z")}, {"now": at("2026-06-01T00:00:00Z")}),
    (LUNCH, {"now": at("2026-03-27T10:30:00Z")}, {"now": at("2026-03-27T09:30:00Z")}),  # Friday, CET
    (LUNCH, {"now": at("2026-03-30T09:30:00Z")}, {"now": at("2026-03-30T12:30:00Z")}),  # Monday, CEST
    (NIGHT, {"now": at("2026-03-29T03:59:00Z")}, {"now": at("2026-03-29T04:30:00Z")}),  # across midnight and DST
])
async def test_each_condition_matches_and_does_not(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, condition: dict[str, Any],
        matching: dict[str, Any], other: dict[str, Any]) -> None:
    key = await make_key()
    code = await create(api, key, destination=url(DEFAULT), rules=[{"if": condition, "destination": url(HIT)}])
    assert answer(await scan(edge_app, code["slug"], **matching)) in (HIT, f"{HIT}?src=flyer")
    assert answer(await scan(edge_app, code["slug"], **other)) in (DEFAULT, f"{DEFAULT}?src=poster")


async def test_a_rule_memo_keeps_no_visitor_query_nor_address(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory) -> None:
    """A code's compiled rules remember answers per facts many visitors share (docs/rules.md), outside the
    local cache's estimate: not the raw query (up to 8 KiB each) that a bot varies on every scan."""
    key = await make_key()
    code = await create(api, key, destination=url(DEFAULT), rules=[
        {"if": {"query": {"lang": "de"}}, "destination": url(HIT)},
        {"if": {"ip": ["198.51.100.0/24"]}, "destination": url(HIT)}])
    for n in range(20):
        assert answer(await scan(edge_app, code["slug"], query=f"?n={n}&pad={'x' * 7000}")) == \
            f"{DEFAULT}?n={n}&pad={'x' * 7000}"
    assert answer(await scan(edge_app, code["slug"], query="?lang=de")) == f"{HIT}?lang=de"
    target = edge_app.scans.target(f"/{code['slug']}", b"qr.test")
    assert target is not None
    scan_plan = edge_app.lookup.find_cached(*target)
    assert isinstance(scan_plan, PreparedScan) and scan_plan.resolution.plan is not None
    routing = scan_plan.resolution.plan.routing
    assert routing is not None and list(routing.memo) == [None]  # the rules read nothing many visitors share


async def test_rule_order_group_rules_and_leaving_the_group(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    group = await create(api, key, "/v1/qr-groups", destination=url("https://example.com/group"), rules=[
        {"if": {"country": ["DE"]}, "destination": url("https://example.com/group-de")},
        {"if": {"device": ["ios"]}, "destination": url("https://example.com/group-ios")}])
    inheriting = await create(api, key, group_id=group["id"], rules=[
        {"if": {"device": ["ios"]}, "destination": url("https://example.com/code-ios")}])
    broken_out = await create(api, key, group_id=group["id"], destination=url("https://example.com/own"))
    assert [r["source"] for r in inheriting["resolved"]["rules"]] == ["code", "group", "group"]
    assert answer(await scan(edge_app, inheriting["slug"], user_agent=IPHONE, cf_ipcountry="DE")) == \
        "https://example.com/code-ios"  # the code's own rule comes first
    assert answer(await scan(edge_app, inheriting["slug"], user_agent=WINDOWS, cf_ipcountry="DE")) == \
        "https://example.com/group-de"
    assert answer(await scan(edge_app, inheriting["slug"], user_agent=WINDOWS, cf_ipcountry="FR")) == \
        "https://example.com/group"
    assert answer(await scan(edge_app, broken_out["slug"], user_agent=IPHONE, cf_ipcountry="DE")) == \
        "https://example.com/own"  # a code with its own destination has left the group's routing
    events = await stream_events(redis, redis_namespace)
    assert [(e.rule, e.variant) for e in events] == [(0, None), (1, None), (None, None), (None, None)]
    await patch(api, key, f"/v1/qr-codes/{inheriting['id']}", group_id=None, destination=url("https://example.com/x"))
    assert answer(await scan(edge_app, inheriting["slug"], user_agent=WINDOWS, cf_ipcountry="DE")) == \
        "https://example.com/x"  # the next scan after leaving the group has lost its rules


async def test_split_is_sticky_per_visitor_and_follows_the_weights(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    group = await create(api, key, "/v1/qr-groups", destination=url(DEFAULT), split=[
        {"weight": 70, "destination": url("https://example.com/a")},
        {"weight": 30, "destination": url("https://example.com/b")}])
    code = await create(api, key, group_id=group["id"], url_params={"utm_medium": "table"})
    seen: Counter[str | int] = Counter()
    async with client_of(edge_app) as client:
        for n in range(2_000):  # distinct visitors: the same address, each with its own phone
            seen[answer(await client.get(f"/{code['slug']}", headers={"user-agent": f"visitor {n}"}))] += 1
    # The weights to ±0.02 over 10,000 visitors: tests/shared/test_routing.py. Here, that the edge draws with
    # them: ±0.04 is 3.9 standard deviations of 2,000 draws.
    assert abs(seen["https://example.com/a?utm_medium=table"] / 2_000 - 0.7) <= 0.04, seen
    assert abs(seen["https://example.com/b?utm_medium=table"] / 2_000 - 0.3) <= 0.04, seen
    first = [answer(await scan(edge_app, code["slug"], user_agent=f"visitor {n}")) for n in range(20)]
    assert [answer(await scan(edge_app, code["slug"], user_agent=f"visitor {n}")) for n in range(20)] == first
    events = await stream_events(redis, redis_namespace)
    assert {e.variant for e in events} == {0, 1} and {e.rule for e in events} == {None}


async def test_validity_window_and_expired_destination(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    code = await create(api, key, destination=url(DEFAULT), valid_from="2026-06-01T00:00:00+02:00",
                        valid_until="2026-07-01T00:00:00Z")
    assert code["valid_from"] == "2026-05-31T22:00:00Z"
    page = await scan(edge_app, code["slug"], now=at("2026-05-31T21:59:59Z"))
    assert page.status_code == 404 and b"not active yet" in page.content
    assert answer(await scan(edge_app, code["slug"], now=at("2026-05-31T22:00:00Z"))) == DEFAULT
    gone = await scan(edge_app, code["slug"], now=at("2026-07-01T00:00:00Z"))
    assert gone.status_code == 410 and b"expired" in gone.content
    await patch(api, key, f"/v1/qr-codes/{code['id']}", expired_destination=url("https://example.com/over"))
    assert answer(await scan(edge_app, code["slug"], query="?a=1", now=at("2026-07-02T00:00:00Z"))) == \
        "https://example.com/over?a=1"
    outcomes = [e.outcome for e in await stream_events(redis, redis_namespace)]
    assert outcomes == ["scheduled", "redirected", "expired", "expired"]


async def test_password_form_right_wrong_and_throttled(
        api: httpx.AsyncClient, edge_app: EdgeApp, make_key: KeyFactory, redis: aioredis.Redis,
        redis_namespace: str) -> None:
    key = await make_key()
    group = await create(api, key, "/v1/qr-groups", destination=url(DEFAULT), password="open sesame")
    assert group["has_password"] is True and "password" not in group and "password_hash" not in group
    code = await create(api, key, group_id=group["id"])
    form = await scan(edge_app, code["slug"], query="?qr=1&utm_source=flyer")
    assert form.status_code == 200 and b'name="password"' in form.content and b'action=""' in form.content
    head = await scan(edge_app, code["slug"], method="HEAD")
    assert head.status_code == 200 and head.content == b""
    wrong = await scan(edge_app, code["slug"], method="POST", data={"password": "guess"})
    assert wrong.status_code == 403 and b"Wrong password" in wrong.content
    right = await scan(edge_app, code["slug"], query="?qr=1&utm_source=flyer", method="POST",
                       data={"password": "open sesame"})
    assert answer(right) == f"{DEFAULT}?utm_source=flyer"
    events = await stream_events(redis, redis_namespace)
    assert [(e.outcome, e.method) for e in events] == [
        ("password_prompt", "GET"), ("password_prompt", "HEAD"), ("password_failed", "POST"),
        ("redirected", "POST")]
    edge_app.passwords = PasswordChecks(per_client=KeyedThrottle(burst=2, per_second=0.001))
    results = [(await scan(edge_app, code["slug"], method="POST", data={"password": "x"})).status_code
               for _ in range(3)]
    assert results == [403, 403, 429]
    other_address = await scan(edge_app, code["slug"], ip="198.51.100.1", method="POST",
                               data={"password": "open sesame"})
    assert answer(other_address) == DEFAULT
    edge_app.passwords.close()
