"""RFC 9457 problem details: every API error, whatever raised it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson
import redis.exceptions
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://scanroute.dev/problems/"
TITLES = {400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden",
          404: "Not found", 405: "Method not allowed", 409: "Conflict", 413: "Payload too large",
          415: "Unsupported media type", 422: "Unprocessable content", 429: "Too many requests",
          500: "Internal server error", 503: "Service unavailable"}
SLUGS = {400: "bad-request", 401: "unauthorized", 402: "payment-required", 403: "forbidden", 404: "not-found",
         405: "method-not-allowed", 409: "conflict", 413: "payload-too-large", 415: "unsupported-media-type",
         422: "validation", 429: "rate-limited", 500: "internal", 503: "unavailable"}


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, type: str | None = None, title: str | None = None,
                 errors: Sequence[Mapping[str, str]] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = PROBLEM_BASE + (type or SLUGS.get(status, "error"))
        self.title = title or TITLES.get(status, "Error")
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                                "detail": self.detail}
        if self.errors:
            body["errors"] = self.errors
        return Response(orjson.dumps(body), self.status, self.headers, "application/problem+json")


def validation_problem(errors: list[dict[str, str]], detail: str = "The request body is not valid.") -> Problem:
    return Problem(422, detail, errors=errors)


def field_error(field: str, message: str) -> Problem:
    return validation_problem([{"field": field, "message": message}], f"{field}: {message}")


def from_validation_error(exc: ValidationError, prefix: str = "") -> Problem:
    errors = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        errors.append({"field": prefix + location, "message": message.removeprefix("Value error, ")})
    return validation_problem(errors)


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return exc.response()


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.status_code != 404 else "No such route."
    return Problem(exc.status_code, detail, headers=exc.headers).response()


async def handle_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dependency unavailable for %s %s: %r", request.method, request.url.path, exc)
    return Problem(503, "A datastore is unreachable; retry shortly.", headers={"Retry-After": "1"}).response()


async def handle_data_error(request: Request, exc: Exception) -> Response:
    # The database refused a value that passed validation (e.g. NUL in a query parameter).
    return Problem(422, f"A value cannot be stored or compared: {exc}").response()


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return Problem(500, "An unexpected error occurred; it has been logged.").response()


UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError,
)


def exception_handlers() -> dict[Any, Any]:
    handlers: dict[Any, Any] = {Problem: handle_problem, HTTPException: handle_http}
    handlers.update({cls: handle_unavailable for cls in UNAVAILABLE})
    handlers[asyncpg.DataError] = handle_data_error
    handlers[Exception] = handle_unexpected
    return handlers
