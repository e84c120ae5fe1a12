"""An endpoint saved before IDNA 2008 was checked keeps receiving deliveries: its host name is checked when the
URL is saved, not at every attempt (docs/webhooks.md)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from control_plane.webhooks.dispatcher import Dispatcher
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, Receiver, create_endpoint, create_group, deliveries
from tests.local_dns import LocalDNS

OLD_HOST = "xn--zz.example"  # an ASCII host the earlier release stored as given (no punycode of anything)


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "OUTBOUND_ALLOWED_HOSTS": f"127.0.0.1,localhost,hooks.test,{OLD_HOST}"}


async def test_an_endpoint_on_a_host_idna_2008_refuses_still_receives(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher, dns: LocalDNS,
        db: asyncpg.Connection[Any]) -> None:
    dns.answers |= {"hooks.test": "127.0.0.1", OLD_HOST: "127.0.0.1"}
    key = await make_key(scopes=WEBHOOK_SCOPES)
    endpoint = await create_endpoint(api, key, f"http://hooks.test:{receiver.port}/hook")
    await db.execute("UPDATE webhook_endpoints SET url = $2 WHERE id = $1", endpoint["id"],
                     f"http://{OLD_HOST}:{receiver.port}/hook")
    await create_group(api, key)
    while await dispatcher.fan_out():
        pass
    assert await dispatcher.deliver_due() == 1
    [delivery] = await deliveries(api, key, endpoint["id"])
    [attempt] = delivery["attempts"]
    assert (attempt["status_code"], delivery["status"]) == (200, "succeeded"), attempt["error"]
    assert receiver.requests[0].headers["host"] == f"{OLD_HOST}:{receiver.port}"
