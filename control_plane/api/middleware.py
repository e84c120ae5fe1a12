"""Per-API-key middleware on /v1: rate limits (token bucket in Redis) and Idempotency-Key replays.

Both identify the caller by a hash of the bearer token, so they run before (and without) the database
lookup that authentication does. Neither ever sees or stores the token itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.api.auth import invalid_key
from control_plane.api.problems import problem_response
from control_plane.api.request_redis import STORE_ERRORS, RedisSkipped
from control_plane.api.sealed_replays import seal, unseal
from control_plane.api.state import scope_state
from control_plane.services.keys import find_key
from shared.keys import ApiKeys
from shared.problems import Problem
from shared.throttle import client_key

log = logging.getLogger(__name__)

IDEMPOTENCY_TTL = 24 * 3600  # seconds a response is replayed
IN_FLIGHT_TTL = 120  # seconds a crashed request can block its key
STORE_RETRY_DELAYS = (0.1, 0.3, 1.0)  # seconds before each further attempt to store a response
NOT_CACHED = {401, 403, 429}  # the request never ran: a retry must run it

# A token bucket refilled continuously at ARGV[1] tokens/s up to ARGV[2]; a request costs ARGV[3] tokens
# (0: only look whether one is left). Returns {allowed, tokens left, seconds until full, seconds until the
# next token}.
TOKEN_BUCKET = """
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local retry = 0
if allowed == 0 then retry = math.ceil((1 - tokens) / rate) end
return {allowed, math.floor(tokens), math.ceil((burst - tokens) / rate), retry}
"""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def bearer_token(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def caller(scope: Scope) -> str | None:
    """A stable, non-reversible name for the bearer token of the request, if any."""
    token = bearer_token(scope)
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()[:32]


def _applies(scope: Scope) -> bool:
    return scope["type"] == "http" and str(scope["path"]).startswith("/v1/")


# Served to anyone without a key (images embedded in pages, previews, logos): limited per client address.
PUBLIC_PREFIXES = ("/i/", "/qr/", "/logos/")


class RateLimitMiddleware:
    """Token buckets in Redis: per API key under /v1; per client address for requests without a key, for
    requests whose key failed authentication (so random tokens cannot each get a fresh bucket) and for
    the public image routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope["path"]) if scope["type"] == "http" else ""
        if path.startswith(PUBLIC_PREFIXES):
            return await self._limit(scope, receive, send, address_bucket(scope, "public"), per_address=True)
        if not path.startswith("/v1/"):
            return await self.app(scope, receive, send)
        owner = caller(scope)
        anonymous = address_bucket(scope, "anonymous")
        if owner is None:
            return await self._limit(scope, receive, send, anonymous, per_address=True)
        # An address whose failed-auth budget is spent is refused before its key is even looked at.
        if not await self._take(scope, anonymous, per_address=True, cost=0):
            return await self._limit(scope, receive, send, anonymous, per_address=True)

        async def charge_failures(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                await self._take(scope, anonymous, per_address=True, cost=1)
            await send(message)

        await self._limit(scope, receive, charge_failures, f"key:{owner}", per_address=False)

    async def _take(self, scope: Scope, bucket: str, *, per_address: bool, cost: int) -> bool:
        try:
            return bool((await self._bucket(scope, bucket, per_address, cost))[0])
        except RedisSkipped:
            return True  # logged once per outage by RequestRedis

    @staticmethod
    async def _bucket(scope: Scope, bucket: str, per_address: bool, cost: int) -> list[int]:
        state = scope_state(scope)
        settings = state.settings
        rate, burst = ((settings.address_rate_limit_per_second, settings.address_rate_limit_burst) if per_address
                       else (settings.rate_limit_per_second, settings.rate_limit_burst))
        keys = [ApiKeys(settings.stores.redis_namespace).rate_limit(bucket)]
        result: list[int] = await state.request_redis.call(
            lambda: state.rate_limiter(keys=keys, args=[rate, burst, cost]))
        return result

    async def _limit(self, scope: Scope, receive: Receive, send: Send, bucket: str, *, per_address: bool) -> None:
        settings = scope_state(scope).settings
        try:
            allowed, remaining, reset, retry = await self._bucket(scope, bucket, per_address, 1)
        except RedisSkipped:  # logged once per outage by RequestRedis
            return await self.app(scope, receive, send)
        burst = settings.address_rate_limit_burst if per_address else settings.rate_limit_burst
        headers = [(b"ratelimit-limit", str(burst).encode()),
                   (b"ratelimit-remaining", str(remaining).encode()), (b"ratelimit-reset", str(reset).encode())]
        if not allowed:
            problem = Problem(429, f"Rate limit exceeded; retry in {max(retry, 1)} s.",
                              headers={"Retry-After": str(max(retry, 1))})
            return await _with_headers(problem_response(problem), headers)(scope, receive, send)
        await _with_headers(self.app, headers)(scope, receive, send)


def address_bucket(scope: Scope, kind: str) -> str:
    """The bucket of the request's client address, as `client_key` counts it (an IPv6 client by its /64)."""
    client = scope.get("client")
    return f"{kind}:{client_key(client[0]) if client else 'unknown'}"


def _with_headers(app: Any, headers: list[tuple[bytes, bytes]]) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await app(scope, receive, add)

    return wrapped


class IdempotencyMiddleware:
    """Same key + same body within 24 h → the first response again; other body → 422; in flight → 409.

    Replays go only to the same API key, and only while it is still valid; the stored response is sealed
    with that key (control_plane.api.sealed_replays), so Redis never holds a secret in plain text.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key") if _applies(scope) and scope["method"] == "POST" else None
        token = bearer_token(scope) if key is not None else None
        if key is None or token is None:
            return await self.app(scope, receive, send)
        if not 1 <= len(key) <= 255:
            problem = Problem(400, "Idempotency-Key must be 1-255 characters.", type="idempotency-key")
            return await problem_response(problem)(scope, receive, send)
        body = await _read_body(receive)
        # The query string is part of the request: `POST /v1/imports?dry_run=true` and then `POST /v1/imports` under
        # one key are two different requests (422), not a replay of the dry run.
        fingerprint = hashlib.sha256(scope["path"].encode() + b"?" + scope["query_string"] + b"\0" + body).hexdigest()
        state = scope_state(scope)
        owner = hashlib.sha256(token.encode()).hexdigest()[:32]
        redis_key = ApiKeys(state.settings.stores.redis_namespace).idempotency(
            owner, hashlib.sha256(key.encode()).hexdigest()[:32])
        client = state.request_redis.client
        try:
            claimed = await state.request_redis.call(
                lambda: client.set(redis_key, orjson.dumps({"fp": fingerprint}), nx=True, ex=IN_FLIGHT_TTL))
            if not claimed:
                if await find_key(state.db, token) is None:  # revoked since the first request
                    return await problem_response(invalid_key())(scope, receive, send)
                return await self._replay(token, redis_key, fingerprint, scope, receive, send)
        except RedisSkipped:  # logged once per outage by RequestRedis
            problem = Problem(503, "Idempotency-Key cannot be honoured right now; retry shortly.",
                              headers={"Retry-After": "1"})
            return await problem_response(problem)(scope, receive, send)
        except STORE_ERRORS as exc:
            log.warning("idempotency store unavailable: %r", exc)
            problem = Problem(503, "Idempotency-Key cannot be honoured right now; retry shortly.",
                              headers={"Retry-After": "1"})
            return await problem_response(problem)(scope, receive, send)
        captured: dict[str, Any] = {"body": b""}
        held: list[Message] = []  # sent once the response is stored: a client that has it can rely on a replay

        async def capture(message: Message) -> None:
            held.append(message)
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = [(k.decode("latin-1"), v.decode("latin-1"))
                                       for k, v in message.get("headers", []) if k.lower() not in (b"ratelimit-limit",
                                       b"ratelimit-remaining", b"ratelimit-reset", b"content-length")]
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")

        try:
            await self.app(scope, _replayed_receive(body, receive), capture)
        finally:
            # The short-budget client without the circuit: its own retries below are what a blip needs.
            await self._store(client, token, redis_key, fingerprint, captured)
        for message in held:
            await send(message)

    @staticmethod
    async def _store(client: Any, token: str, redis_key: str, fingerprint: str, captured: dict[str, Any]) -> None:
        """Store the response to replay, before it is sent (docs/api.md §4.1), retrying a Redis blip briefly.
        On the first failure the claim is kept for the replay's 24 h (EXPIRE works even where Redis refuses
        writes for memory), so that if the response never gets stored a retry gets a 409 saying the request
        already ran, never a second run. Only if the claim is lost too can a retry after IN_FLIGHT_TTL run the
        request again (logged)."""
        status = captured.get("status")
        if status is None or status >= 500 or status in NOT_CACHED:
            try:
                await client.delete(redis_key)
            except STORE_ERRORS as exc:
                log.warning("could not release an idempotency claim (it expires by itself): %r", exc)
            return
        response = {"status": status, "headers": captured["headers"], "body": captured["body"].decode()}
        record = orjson.dumps({"fp": fingerprint, "sealed": seal(token, redis_key, response)})
        kept = False
        for attempt, delay in enumerate((0, *STORE_RETRY_DELAYS)):
            await asyncio.sleep(delay)
            try:
                await client.set(redis_key, record, ex=IDEMPOTENCY_TTL)
                return
            except STORE_ERRORS as exc:
                log.warning("could not store idempotent response: %r", exc)
            if attempt == 0:
                try:
                    kept = bool(await client.expire(redis_key, IDEMPOTENCY_TTL))
                except STORE_ERRORS as exc:
                    log.warning("could not keep the idempotency claim: %r", exc)
        if kept:
            log.error("idempotent response not stored; its key stays claimed as done for %s s", IDEMPOTENCY_TTL)
        else:
            log.error("idempotent response and claim lost: a retry after %s s may run the request again",
                      IN_FLIGHT_TTL)

    @staticmethod
    async def _replay(token: str, redis_key: str, fingerprint: str, scope: Scope, receive: Receive,
                      send: Send) -> None:
        redis = scope_state(scope).request_redis
        raw = await redis.call(lambda: redis.client.get(redis_key))
        record: dict[str, Any] = orjson.loads(raw) if raw else {"fp": fingerprint}
        if record["fp"] != fingerprint:
            problem = Problem(422, "This Idempotency-Key was used with a different request body.",
                              type="idempotency-key-reused")
            return await problem_response(problem)(scope, receive, send)
        response = unseal(token, redis_key, record["sealed"]) if "sealed" in record else None
        if response is None and await redis.call(lambda: redis.client.ttl(redis_key)) > IN_FLIGHT_TTL:
            # A claim kept for the replay's 24 h by _store: the request ran, but its response is not stored.
            problem = Problem(409, "A request with this Idempotency-Key already ran, but its response could not"
                                   " be stored; it is not run again.", type="idempotency-key-used")
            return await problem_response(problem)(scope, receive, send)
        if response is None:
            problem = Problem(409, "A request with this Idempotency-Key is still in progress.",
                              type="idempotency-key-in-use", headers={"Retry-After": "1"})
            return await problem_response(problem)(scope, receive, send)
        body = response["body"].encode()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response["headers"]]
        headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
        await send({"type": "http.response.start", "status": response["status"], "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replayed_receive(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
