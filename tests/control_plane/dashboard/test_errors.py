"""Odd requests to the dashboard: a clear answer, counted in /metrics, never an error logged as unhandled."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.control_plane.dashboard.conftest import BrowserFactory, UserFactory, sign_in


async def test_an_unknown_dashboard_path_is_a_404_not_an_unhandled_error(browser: BrowserFactory,
                                                                        make_user: UserFactory,
                                                                        caplog: pytest.LogCaptureFixture):
    """A scanner probing /app/wp-admin, a typo, a stale bookmark: a 404, and nothing at ERROR in the log."""
    await make_user()
    client = browser()
    await sign_in(client)
    with caplog.at_level(logging.ERROR):
        missing = await client.get("/app/wp-admin")
    assert missing.status_code == 404
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_dashboard_answers_are_counted_under_their_route(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    await sign_in(client)
    assert (await client.get("/app/codes")).status_code == 200
    assert (await client.get("/app/static/app.css")).status_code == 200
    assert (await client.get("/app/wp-admin")).status_code == 404
    counts = {tuple(sorted(s.labels.items())): s.value
              for family in text_string_to_metric_families((await client.get("/metrics")).text)
              for s in family.samples if s.name == "scanroute_api_requests_total"}
    assert counts[(("method", "GET"), ("route", "/app/codes"), ("status", "200"))] == 1
    assert counts[(("method", "GET"), ("route", "/app/static/{path}"), ("status", "200"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1
