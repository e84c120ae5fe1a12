from __future__ import annotations

import asyncio
import dataclasses
import ssl
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import trustme
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from control_plane.webhooks.delivery import create_session
from control_plane.webhooks.dispatcher import Dispatcher
from control_plane.webhooks.schedule import MAX_ATTEMPTS
from shared.settings import OutboundSettings, WebhookSettings
from shared.times import timestamp
from tests.conftest import KeyFactory, bearer
from tests.control_plane.webhooks.conftest import (
    WEBHOOK_SCOPES,
    FrozenClock,
    Receiver,
    create_endpoint,
    create_group,
    deliveries,
    serve_receiver,
)
from tests.local_http import local_server


async def test_a_change_arrives_signed_per_standard_webhooks(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    group = await create_group(api, key)

    assert await dispatcher.drain() == 1
    [request] = receiver.requests
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["id"] == request.headers["webhook-id"] and payload["id"].startswith("evt_")
    assert payload["object"] == "event" and payload["type"] == "qr_group.created"
    assert payload["livemode"] is True and payload["created_at"].endswith("Z")
    assert payload["data"]["object"] == group
    assert request.headers["content-type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(request.body, request.headers)

    [delivery] = await deliveries(api, key, endpoint["id"])
    assert delivery["status"] == "succeeded" and delivery["event_id"] == payload["id"]
    assert delivery["event_type"] == "qr_group.created" and delivery["next_attempt_at"] is None
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["response_excerpt"] == "receiver answered 200" and attempt["latency_ms"] >= 0


async def test_the_excerpt_is_the_answers_first_kilobyte_however_it_arrives(
        api: httpx.AsyncClient, make_key: KeyFactory, dispatcher: Dispatcher) -> None:
    async def streamed(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=500, headers={"content-type": "text/plain"})
        await response.prepare(request)
        await response.write(b"error: ")
        await asyncio.sleep(0.2)
        await response.write(b"database connection refused " + b"x" * 2000)
        await response.write_eof()
        return response

    key = await make_key(scopes=WEBHOOK_SCOPES)
    async with local_server([web.post("/hook", streamed)]) as base:
        endpoint = await create_endpoint(api, key, f"{base}/hook")
        await create_group(api, key)
        assert await dispatcher.drain() == 1
    [delivery] = await deliveries(api, key, endpoint["id"])
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 500
    assert attempt["response_excerpt"] == ("error: database connection refused " + "x" * 2000)[:1024]


async def test_both_secrets_sign_during_the_rotation_grace_period(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    old = Webhook(endpoint["secret"])
    rotated = await api.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", headers=bearer(key))
    assert rotated.status_code == 200, rotated.text
    new = Webhook(rotated.json()["secret"])
    assert rotated.json()["secret"] != endpoint["secret"]

    await create_group(api, key)
    await dispatcher.drain()
    [during] = receiver.requests
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert old.verify(during.body, during.headers) == new.verify(during.body, during.headers)

    clock.advance(timedelta(hours=24, minutes=1))
    await create_group(api, key, "after the grace period")
    await dispatcher.drain()
    after = receiver.requests[1]
    sent_at = clock.now.replace(microsecond=0)
    expected = new.sign(after.headers["webhook-id"], sent_at, after.body.decode())
    assert after.headers["webhook-timestamp"] == str(int(sent_at.timestamp()))
    assert after.headers["webhook-signature"] == expected
    assert old.sign(after.headers["webhook-id"], sent_at, after.body.decode()) != expected


async def test_three_failures_then_success_follow_the_retry_schedule(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    receiver.script["/hook"] = [500, 500, 500, 200]
    await create_group(api, key)

    assert await dispatcher.drain() == 1
    attempted_at = [clock.now]
    for wait in (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=8)):
        clock.advance(wait - timedelta(seconds=1))
        assert await dispatcher.drain() == 0, "not due yet"
        clock.advance(timedelta(seconds=1))
        assert await dispatcher.drain() == 1
        attempted_at.append(clock.now)
        [delivery] = await deliveries(api, key, endpoint["id"])
        if len(attempted_at) < 4:
            assert delivery["status"] == "pending"
            # jitter is fixed at the middle of its range, so the delays are exactly 30 s, 2 min, 8 min
            assert delivery["next_attempt_at"] == timestamp(clock.now + timedelta(seconds=30) * 4 ** (
                len(attempted_at) - 1))

    clock.advance(timedelta(days=3))
    assert await dispatcher.drain() == 0
    assert len(receiver.requests) == 4
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1
    assert [r.body for r in receiver.requests] == [receiver.requests[0].body] * 4
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 4
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 500, 500, 200]
    assert [a["error"] for a in attempts] == ["HTTP 500"] * 3 + [None]
    assert [a["attempted_at"] for a in attempts] == [timestamp(t) for t in attempted_at]
    assert attempts[0]["response_excerpt"] == "receiver answered 500"


async def test_410_disables_the_endpoint_at_once(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    receiver.script["/hook"] = [410]
    await create_group(api, key)
    await dispatcher.drain()

    now = (await api.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(key))).json()
    assert now["enabled"] is False and now["disabled_reason"] == "gone"
    [delivery] = await deliveries(api, key, endpoint["id"])
    assert delivery["status"] == "failed" and delivery["attempts"][0]["status_code"] == 410
    await create_group(api, key, "after 410")
    await dispatcher.drain()
    assert len(receiver.requests) == 1
    assert len(await deliveries(api, key, endpoint["id"])) == 1


async def test_an_endpoint_failing_for_days_is_disabled_and_its_backlog_waits(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    receiver.script["/hook"] = [503] * 1000
    await create_group(api, key, "first")
    for _ in range(MAX_ATTEMPTS):  # one attempt per drain, 9 h apart: 99 h, the schedule is spent
        await dispatcher.drain()
        clock.advance(timedelta(hours=9))
    [first] = await deliveries(api, key, endpoint["id"])
    assert first["status"] == "failed" and first["attempt_count"] == MAX_ATTEMPTS
    assert first["attempts"][-1]["error"] == "HTTP 503"
    current = (await api.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(key))).json()
    assert current["enabled"] is True, "four days of failure are not yet enough"

    await create_group(api, key, "second")
    for _ in range(8):
        await dispatcher.drain()
        clock.advance(timedelta(hours=9))
    current = (await api.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(key))).json()
    assert current["enabled"] is False and current["disabled_reason"] == "failing"
    seen = len(receiver.requests)
    await create_group(api, key, "after disabling")
    clock.advance(timedelta(days=2))
    await dispatcher.drain()
    assert len(receiver.requests) == seen, "nothing more is sent to a disabled endpoint"

    # Enabling it again sends what was waiting (the second event, still within its schedule).
    receiver.script["/hook"] = []
    enabled = await api.patch(f"/v1/webhook-endpoints/{endpoint['id']}", headers=bearer(key),
                              json={"enabled": True})
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None
    clock.advance(timedelta(minutes=1))
    assert await dispatcher.drain() == 1
    assert orjson.loads(receiver.requests[-1].body)["data"]["object"]["name"] == "second"


async def test_events_reach_only_subscribed_endpoints_of_the_same_org_and_mode(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher) -> None:
    live = await make_key(scopes=WEBHOOK_SCOPES)
    test = await make_key(scopes=WEBHOOK_SCOPES, livemode=False)
    other = await make_key("globex", scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, live, receiver.url("/all"))
    await create_endpoint(api, live, receiver.url("/groups"), ["qr_group.created", "qr_group.deleted"])
    await create_endpoint(api, live, receiver.url("/codes"), ["qr.created"])
    await create_endpoint(api, live, receiver.url("/off"), ["*"], enabled=False)
    await create_endpoint(api, test, receiver.url("/test-mode"))
    await create_endpoint(api, other, receiver.url("/other-org"))

    group = await create_group(api, live)
    await api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(live), json={"name": "renamed"})
    await dispatcher.drain()

    def types(path: str) -> list[str]:
        return sorted(orjson.loads(r.body)["type"] for r in receiver.at(path))

    assert types("/all") == ["qr_group.created", "qr_group.updated"]
    assert types("/groups") == ["qr_group.created"]
    assert types("/codes") == types("/off") == types("/test-mode") == types("/other-org") == []


async def test_the_test_event_goes_to_that_endpoint_only(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    target = await create_endpoint(api, key, receiver.url("/target"))
    await create_endpoint(api, key, receiver.url("/bystander"))
    response = await api.post(f"/v1/webhook-endpoints/{target['id']}/test", headers=bearer(key))
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending" and response.json()["event_type"] == "webhook_endpoint.test"

    clock.advance(timedelta(seconds=5))  # the API queued it at the database's now, after the clock stopped
    assert await dispatcher.drain() == 1
    [request] = receiver.at("/target")
    payload = Webhook(target["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "webhook_endpoint.test" and payload["data"]["object"]["id"] == target["id"]
    assert receiver.at("/bystander") == []
    [delivery] = await deliveries(api, key, target["id"])
    assert delivery["status"] == "succeeded" and delivery["event_id"] == payload["id"]


async def test_delivery_checks_the_address_again_and_follows_no_redirect(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock, dispatcher: Dispatcher) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    guarded = await create_endpoint(api, key, receiver.url("/guarded"))
    moved = await create_endpoint(api, key, receiver.url("/moved"))
    receiver.script["/moved"] = [302]
    await create_group(api, key)
    # The dispatcher runs without the development allow-list: 127.0.0.1 is no longer acceptable for
    # /guarded, as if its DNS had changed since the endpoint was saved.
    strict = dataclasses.replace(webhook_settings, outbound=OutboundSettings(allow_http=True))
    session = create_session(strict.delivery_timeout)
    try:
        await Dispatcher(strict, pool, session, clock=clock).drain()
        [refused] = (await deliveries(api, key, guarded["id"]))[0]["attempts"]
        assert refused["status_code"] is None and "refused" in refused["error"]
        assert "a loopback address" in refused["error"] and "127.0.0.1" not in refused["error"]  # kind, not address
    finally:
        await session.close()
    assert receiver.at("/guarded") == []

    clock.advance(timedelta(seconds=40))  # the first attempt at /moved was refused too; retry after 30 s ± 20 %
    await dispatcher.drain()
    redirected = (await deliveries(api, key, moved["id"]))[0]["attempts"][-1]
    assert redirected["status_code"] == 302 and redirected["error"] == "HTTP 302"
    assert len(receiver.at("/moved")) == 1 and receiver.at("/redirected") == []


async def test_a_slow_receiver_times_out_and_is_retried(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    await create_group(api, key)
    receiver.delay = 1.0
    impatient = dataclasses.replace(webhook_settings, delivery_timeout=0.2)
    session = create_session(impatient.delivery_timeout)
    try:
        await Dispatcher(impatient, pool, session, clock=clock).drain()
    finally:
        await session.close()
    [delivery] = await deliveries(api, key, endpoint["id"])
    assert delivery["status"] == "pending" and delivery["next_attempt_at"] is not None
    assert delivery["attempts"][0]["error"] == "timed out"



async def test_a_2xx_whose_body_never_ends_is_delivered(
        api: httpx.AsyncClient, make_key: KeyFactory, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock) -> None:
    """The answer's status is what counts: a receiver that says 200 at once, then trickles its body past the
    timeout, received the event (retrying it would deliver it twice)."""
    async def trickling(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200, headers={"content-type": "text/plain"})
        await response.prepare(request)
        await response.write(b"ok")
        await asyncio.sleep(2.0)
        return response

    key = await make_key(scopes=WEBHOOK_SCOPES)
    impatient = dataclasses.replace(webhook_settings, delivery_timeout=0.5)
    session = create_session(impatient.delivery_timeout)
    try:
        async with local_server([web.post("/hook", trickling)]) as base:
            endpoint = await create_endpoint(api, key, f"{base}/hook")
            await create_group(api, key)
            await Dispatcher(impatient, pool, session, clock=clock).drain()
    finally:
        await session.close()
    [delivery] = await deliveries(api, key, endpoint["id"])
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"][0]["status_code"] == 200 and delivery["attempts"][0]["error"] is None

@pytest.mark.parametrize("certificate_for", ["localhost", "elsewhere.example"])
async def test_https_checks_the_certificate_of_the_name_while_connecting_to_the_checked_address(
        api: httpx.AsyncClient, make_key: KeyFactory, webhook_settings: WebhookSettings,
        pool: asyncpg.Pool[Any], clock: FrozenClock, certificate_for: str) -> None:
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(certificate_for).configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    key = await make_key(scopes=WEBHOOK_SCOPES)
    async with serve_receiver(server_context) as receiver:
        receiver.host = "localhost"
        endpoint = await create_endpoint(api, key, receiver.url())
        await create_group(api, key)
        session = create_session(webhook_settings.delivery_timeout, ssl_context=client_context)
        try:
            await Dispatcher(webhook_settings, pool, session, clock=clock).drain()
        finally:
            await session.close()
    [attempt] = (await deliveries(api, key, endpoint["id"]))[0]["attempts"]
    if certificate_for == "localhost":
        assert attempt["status_code"] == 200, attempt
        [request] = receiver.requests
        assert request.headers["host"] == f"localhost:{receiver.port}"
        Webhook(endpoint["secret"]).verify(request.body, request.headers)
    else:
        assert attempt["status_code"] is None and "certificate" in attempt["error"].lower(), attempt
        assert receiver.requests == []


async def test_bulk_mint_and_group_delete_reach_subscribers(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, key, receiver.url())
    group = await create_group(api, key)
    minted = await api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": 3})
    assert minted.status_code == 201, minted.text
    deleted = await api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key))
    assert deleted.status_code == 204

    await dispatcher.drain()
    events = [orjson.loads(r.body) for r in receiver.requests]
    assert sorted(e["type"] for e in events) == ["qr.created"] * 3 + ["qr_group.created", "qr_group.deleted"]
    assert {e["data"]["object"]["id"] for e in events if e["type"] == "qr.created"} == \
        {c["id"] for c in minted.json()["data"]}
    # The detached children get no event of their own: qr_group.deleted says it for all (docs/webhooks.md).
    assert not any(e["type"] == "qr.updated" for e in events)


@pytest.mark.parametrize("change", ["delete", "disable"])
async def test_changing_an_endpoint_while_its_delivery_is_in_flight(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        change: str) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, receiver.url())
    receiver.script["/hook"] = [500]
    receiver.delay = 0.5
    await create_group(api, key)
    await dispatcher.fan_out()
    sending = asyncio.create_task(dispatcher.deliver_due())
    for _ in range(200):
        if receiver.requests:
            break
        await asyncio.sleep(0.01)
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    if change == "delete":
        response = await api.delete(path, headers=bearer(key))
        assert response.status_code == 204, response.text
    else:
        response = await api.patch(path, headers=bearer(key), json={"enabled": False})
        assert response.status_code == 200, response.text
    assert await asyncio.wait_for(sending, 15) == 1, "the batch is recorded, not rolled back by a deadlock"
    if change == "disable":
        [delivery] = await deliveries(api, key, endpoint["id"])
        assert delivery["status"] == "pending" and delivery["attempts"][0]["status_code"] == 500
