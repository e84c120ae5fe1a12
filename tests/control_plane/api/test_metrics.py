"""The control plane's /metrics: requests by route template and status, and their latency."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import KeyFactory, bearer


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name}


async def test_requests_are_counted_by_route_template_not_by_id(api: httpx.AsyncClient,
                                                                 make_key: KeyFactory) -> None:
    key = await make_key()
    for code_id in ("qr_a", "qr_b", "qr_c"):
        assert (await api.get(f"/v1/qr-codes/{code_id}", headers=bearer(key))).status_code == 404
    assert (await api.get("/v1/qr-codes", headers=bearer(key))).status_code == 200
    assert (await api.get("/nothing/here")).status_code == 404
    text = (await api.get("/metrics")).text
    counts = samples(text, "scanroute_api_requests_total")
    assert counts[(("method", "GET"), ("route", "/v1/qr-codes/{code_id}"), ("status", "404"))] == 3
    assert counts[(("method", "GET"), ("route", "/v1/qr-codes"), ("status", "200"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
    assert not any("qr_a" in str(labels) for labels in counts)
    latency = samples(text, "scanroute_api_request_seconds_count")
    assert latency[(("method", "GET"), ("route", "/v1/qr-codes/{code_id}"))] == 3


async def test_the_cache_sync_lag_is_served_with_the_requests(api: httpx.AsyncClient) -> None:
    text = (await api.get("/metrics")).text  # the tests' app runs no cache sync: nothing measured yet
    assert samples(text, "scanroute_cache_sync_lag_seconds") == {(): 0.0}
    assert samples(text, "scanroute_cache_sync_last_pass_timestamp_seconds") == {(): 0.0}
