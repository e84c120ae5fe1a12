"""Odd requests to the dashboard: a clear answer, counted in /metrics, never an error logged as unhandled."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.control_plane.dashboard.conftest import SignedIn, UserFactory, sign_in


@pytest.fixture
async def app(cp_settings: ControlPlaneSettings) -> AsyncIterator[Starlette]:
    """The app itself, for tests that take a datastore away from it."""
    app = create_app(cp_settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://cp.test") as client:
        yield client


def assert_dashboard_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("text/html"), response.text[:300]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert 'href="/app/"' in response.text and "Traceback" not in response.text


async def test_an_unknown_dashboard_path_is_a_404_not_an_unhandled_error(signed_in: SignedIn,
                                                                         caplog: pytest.LogCaptureFixture):
    """A scanner probing /app/wp-admin, a typo, a stale bookmark: a 404, and nothing at ERROR in the log."""
    client = await signed_in()
    with caplog.at_level(logging.ERROR):
        missing = await client.get("/app/wp-admin")
    assert missing.status_code == 404
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_dashboard_answers_are_counted_under_their_route(signed_in: SignedIn):
    client = await signed_in()
    assert (await client.get("/app/codes")).status_code == 200
    assert (await client.get("/app/static/app.css")).status_code == 200
    assert (await client.get("/app/wp-admin")).status_code == 404
    counts = {tuple(sorted(s.labels.items())): s.value
              for family in text_string_to_metric_families((await client.get("/metrics")).text)
              for s in family.samples if s.name == "scanroute_api_requests_total"}
    assert counts[(("method", "GET"), ("route", "/app/codes"), ("status", "200"))] == 1
    assert counts[(("method", "GET"), ("route", "/app/static/{path}"), ("status", "200"))] == 1
    assert counts[(("method", "GET"), ("route", "unmatched"), ("status", "404"))] == 1


async def test_a_page_with_redis_down_is_a_dashboard_error_page(app: Starlette, client: httpx.AsyncClient,
                                                                make_user: UserFactory):
    await make_user()
    assert (await sign_in(client)).status_code == 303
    state = app.state.control_plane
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    app.state.control_plane = dataclasses.replace(state, redis=dead)
    try:
        down = await client.get("/app/codes")
        assert_dashboard_page(down, 503)
        assert down.headers["retry-after"] == "1" and "Try again in a moment" in down.text
        assert (await client.get("/app/login")).status_code == 200  # the form itself needs no store
        client.cookies.set("scanroute_login", "t", path="/app/login")
        signing_in = await client.post("/app/login", data={"email": "ana@example.com", "password": "x" * 10,
                                                           "csrf_token": "t"})
        assert_dashboard_page(signing_in, 503)
    finally:
        app.state.control_plane = state
        await dead.aclose()


async def test_a_page_with_postgresql_down_is_a_dashboard_error_page(app: Starlette, client: httpx.AsyncClient,
                                                                     make_user: UserFactory):
    await make_user()
    assert (await sign_in(client)).status_code == 303
    state = app.state.control_plane
    dead = await asyncpg.create_pool("postgresql://u:p@127.0.0.1:1/x", min_size=0, timeout=0.5)
    app.state.control_plane = dataclasses.replace(state, db=dead, services=dataclasses.replace(state.services,
                                                                                               db=dead))
    try:
        assert_dashboard_page(await client.get("/app/codes"), 503)
    finally:
        app.state.control_plane = state
        await dead.close()


async def test_an_unknown_dashboard_address_is_a_dashboard_page(signed_in: SignedIn):
    client = await signed_in()
    missing = await client.get("/app/codez")
    assert_dashboard_page(missing, 404)
    assert "There is no such page." in missing.text
    assert_dashboard_page(await client.get("/app/codes/new/x"), 404)
    wrong_method = await client.delete("/app/codes")
    assert_dashboard_page(wrong_method, 405)
    assert wrong_method.headers["allow"]


async def test_a_search_the_database_refuses_is_explained_on_a_page(signed_in: SignedIn):
    """A NUL pasted into the codes search: PostgreSQL refuses to compare it."""
    client = await signed_in()
    refused = await client.get("/app/codes?q=a%00b")
    assert_dashboard_page(refused, 422)
    assert "a NUL character" in refused.text
