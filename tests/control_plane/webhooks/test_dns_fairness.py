"""One organisation's name server that never answers delays no other organisation's deliveries."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from control_plane.webhooks.dispatcher import Dispatcher
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, Receiver, create_endpoint, create_group, deliveries
from tests.local_dns import LocalDNS

SLOW = "slow-dns.test"  # org A's receivers: their name server stops answering once deliveries start
FAST = "org-b.test"  # org B's receiver: the local receiver


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OUTBOUND_ALLOWED_HOSTS": f"127.0.0.1,localhost,{FAST}"}


async def test_one_orgs_hanging_dns_does_not_fail_another_orgs_delivery(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher,
        dns: LocalDNS) -> None:
    dns.answers |= {SLOW: "93.184.215.14", FAST: "127.0.0.1"}  # public when org A's URLs are saved
    key_a = await make_key("org-a", scopes=WEBHOOK_SCOPES)
    key_b = await make_key("org-b", scopes=WEBHOOK_SCOPES)
    for n in range(4):
        await create_endpoint(api, key_a, f"http://{SLOW}/hook{n}")
    endpoint_b = await create_endpoint(api, key_b, f"http://{FAST}:{receiver.port}/hook")
    for n in range(8):
        await create_group(api, key_a, f"A {n}")  # 4 endpoints x 8 events = 32 deliveries of org A
    while await dispatcher.fan_out():
        pass

    dns.hanging.add(SLOW)
    org_a = asyncio.create_task(dispatcher.deliver_due())  # org A's 32 attempts: waiting on DNS
    await asyncio.sleep(0.5)
    await create_group(api, key_b, "B")  # org B's event, a moment later
    while await dispatcher.fan_out():
        pass
    assert await dispatcher.deliver_due() == 1
    waited_behind = org_a.done()  # org A's lookups end only at their timeout
    try:
        [delivery] = await deliveries(api, key_b, endpoint_b["id"])
        [attempt] = delivery["attempts"]
        assert attempt["status_code"] == 200 and delivery["status"] == "succeeded", attempt["error"]
        assert not waited_behind, "org B's delivery waited behind org A's DNS"
    finally:
        assert await org_a == 32
