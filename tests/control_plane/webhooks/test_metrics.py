"""The dispatcher counts deliveries by what became of them, and measures its queue."""

from __future__ import annotations

import httpx

from control_plane.webhooks.dispatcher import Dispatcher
from tests.conftest import KeyFactory
from tests.control_plane.webhooks.conftest import WEBHOOK_SCOPES, Receiver, create_endpoint, create_group


def delivered(dispatcher: Dispatcher, result: str) -> float | None:
    return dispatcher.metrics.registry.get_sample_value("scanroute_webhook_deliveries_total", {"result": result})


def queued(dispatcher: Dispatcher, state: str) -> float | None:
    return dispatcher.metrics.registry.get_sample_value("scanroute_webhook_pending_deliveries", {"state": state})


async def test_deliveries_are_counted_by_result_and_the_queue_is_measured(
        api: httpx.AsyncClient, make_key: KeyFactory, receiver: Receiver, dispatcher: Dispatcher) -> None:
    key = await make_key(scopes=WEBHOOK_SCOPES)
    await create_endpoint(api, key, receiver.url("/ok"))
    await create_endpoint(api, key, receiver.url("/flaky"))
    await create_endpoint(api, key, receiver.url("/gone"))
    receiver.script.update({"/flaky": [500], "/gone": [410]})
    await create_group(api, key)
    await create_group(api, key, "second")

    await dispatcher.measure_queue()
    assert dispatcher.metrics.registry.get_sample_value("scanroute_webhook_undispatched_events") == 2
    await dispatcher.fan_out()
    await dispatcher.measure_queue()
    assert dispatcher.metrics.registry.get_sample_value("scanroute_webhook_undispatched_events") == 0
    assert queued(dispatcher, "due") == 6 and queued(dispatcher, "in_flight") == 0

    await dispatcher.drain()
    # One batch, sent at once: each receiver's first answer is scripted, its second is 200.
    assert (delivered(dispatcher, "succeeded"), delivered(dispatcher, "retrying"),
            delivered(dispatcher, "failed")) == (4, 1, 1)
    await dispatcher.measure_queue()
    assert [queued(dispatcher, state) for state in ("due", "in_flight", "scheduled", "parked")] == [0, 0, 1, 0]
    # /flaky and /gone each answered one delivery with 200: both count as recovered, none is in backoff.
    assert [dispatcher.metrics.registry.get_sample_value("scanroute_webhook_endpoints", {"state": state})
            for state in ("paused", "failing", "disabled")] == [0, 0, 0]
