"""Bodies over 1 MiB are refused with 413 before anything reads them; deep JSON is a 400, never a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer

CHUNK = 64 * 1024


@pytest.fixture
async def app(cp_settings: ControlPlaneSettings) -> AsyncIterator[Starlette]:
    app = create_app(cp_settings)
    async with app.router.lifespan_context(app):
        yield app


async def call(app: Starlette, headers: dict[str, str], chunks: int) -> tuple[int, dict[str, Any], int]:
    """POST /v1/qr-codes streaming `chunks` chunks; (status, problem, bytes the app pulled from the client)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= chunks * CHUNK:
            return {"type": "http.disconnect"}
        pulled += CHUNK
        return {"type": "http.request", "body": b" " * CHUNK, "more_body": pulled < chunks * CHUNK}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/qr-codes", "raw_path": b"/v1/qr-codes", "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 5000), "server": ("cp.test", 80), "app": app}
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], orjson.loads(body), pulled


async def test_declared_length_over_the_limit_is_refused_without_reading(app: Starlette) -> None:
    status, problem, pulled = await call(
        app, {"Authorization": "Bearer nope", "Idempotency-Key": "a", "Content-Length": str(300 << 20)}, 4800)
    assert (status, problem["status"]) == (413, 413)
    assert pulled == 0


async def test_streamed_body_is_cut_off_at_the_limit_before_auth_and_idempotency(app: Starlette) -> None:
    # No Content-Length (chunked): the idempotency middleware used to read all 300 MB, then answer 401.
    status, problem, pulled = await call(app, {"Authorization": "Bearer nope", "Idempotency-Key": "a"}, 4800)
    assert status == 413 and problem["type"].endswith("/payload-too-large")
    assert pulled <= (1 << 20) + CHUNK


async def test_streamed_body_over_the_limit_reaching_a_route(app: Starlette, make_key: KeyFactory) -> None:
    key = await make_key()
    status, _, pulled = await call(app, bearer(key), 40)
    assert status == 413
    assert pulled <= (1 << 20) + CHUNK


async def test_a_body_just_under_the_limit_is_parsed(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    body = orjson.dumps({"name": "big", "destination": {"type": "url", "url": "https://example.com/"}})
    padded = body + b" " * ((1 << 20) - len(body))
    response = await api.post("/v1/qr-codes", content=padded, headers=bearer(key))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("depth", [33, 500, 5000])
async def test_deep_json_is_a_400(api: httpx.AsyncClient, make_key: KeyFactory, depth: int) -> None:
    key = await make_key()
    body = b'{"properties": ' + b'{"a": ' * (depth - 1) + b"1" + b"}" * (depth - 1) + b"}"
    response = await api.post("/v1/qr-codes", content=body, headers=bearer(key))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_json_nested_32_deep_is_not_refused_for_depth(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    key = await make_key()
    body = b'{"properties": ' + b'{"a": ' * 30 + b"1" + b"}" * 30 + b"}"
    response = await api.post("/v1/qr-codes", content=body, headers=bearer(key))
    assert response.status_code == 422  # validation (properties are flat), not the depth limit


async def test_a_413_carries_the_rate_limit_headers(api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    """docs/api.md §1: every response carries them; the rate limiter reads no body, so it sits outside."""
    key = await make_key()
    declared = await api.post("/v1/qr-codes", headers=bearer(key), content=b"{" + b" " * (1 << 20) + b"}")

    async def streamed_body() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * CHUNK

    streamed = await api.post("/v1/qr-codes", headers=bearer(key), content=streamed_body())
    for response in (declared, streamed):
        assert response.status_code == 413
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(response.headers)
