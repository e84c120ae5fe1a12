"""Every API error becomes RFC 9457 problem+json here, whatever raised it."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.problems import Problem
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)

def problem_response(problem: Problem) -> Response:
    return Response(problem.body(), problem.status, problem.headers, "application/problem+json")


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc)


def allowed_methods(request: Request) -> str:
    """Every method of the path, over all of its routes (Starlette's own 405 names one route's only).

    Only the most specific templates count: `/v1/qr-codes/upsert` is not also a code id.
    """
    matching = [route for route in request.app.routes
                if isinstance(route, Route) and route.methods and route.path_regex.match(request.scope["path"])]
    fewest = min((route.path.count("{") for route in matching), default=0)
    return ", ".join(sorted({method for route in matching if route.path.count("{") == fewest
                             for method in route.methods or ()}))


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.status_code != 404 else "No such route."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
        detail = f"{request.method} is not allowed here; use {headers['Allow']}."
    return problem_response(Problem(exc.status_code, detail, headers=headers))


async def handle_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("dependency unavailable for %s %s: %r", request.method, request.url.path, exc)
    return problem_response(Problem(503, "A datastore is unreachable; retry shortly.", headers={"Retry-After": "1"}))


async def handle_rollback(request: Request, exc: Exception) -> Response:
    # A deadlock or serialization failure (SQLSTATE class 40): the transaction lost a race with a concurrent
    # one and was rolled back whole. The same request succeeds when retried; a 5xx is not recorded as an
    # idempotent result (docs/api.md §4.1), so a retry with the same Idempotency-Key runs it again.
    log.warning("transaction rolled back on %s %s: %r", request.method, request.url.path, exc)
    return problem_response(Problem(503, "The request conflicted with a concurrent change and was not applied;"
                                         " retry it.", headers={"Retry-After": "1"}))


async def handle_transient(request: Request, exc: Exception) -> Response:
    # A statement cancelled (an operator, a statement_timeout) or PostgreSQL short of disk, memory or
    # connections (SQLSTATE classes 57 and 53): the same request succeeds later (docs/api.md §1).
    log.warning("PostgreSQL could not finish %s %s: %r", request.method, request.url.path, exc)
    return problem_response(Problem(503, "The database could not finish the request right now; retry shortly.",
                                    headers={"Retry-After": "1"}))


async def handle_data_error(request: Request, exc: Exception) -> Response:
    # The database refused a value that passed validation (e.g. NUL in a query parameter). PostgreSQL's own
    # message names its types and functions, not the request's fields: it is logged, not returned.
    log.info("value refused by PostgreSQL on %s %s: %r", request.method, request.url.path, exc)
    return problem_response(Problem(422, "A value in the request cannot be stored or compared (a NUL character,"
                                         " or text that is not valid UTF-8, for example)."))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(Problem(500, "An unexpected error occurred; it has been logged."))


def exception_handlers() -> dict[Any, Any]:
    handlers: dict[Any, Any] = {Problem: handle_problem, HTTPException: handle_http}
    handlers.update({cls: handle_transient for cls in POSTGRES_TRANSIENT})
    handlers.update({cls: handle_unavailable for cls in STORE_UNAVAILABLE})
    handlers[asyncpg.DataError] = handle_data_error
    handlers[asyncpg.exceptions.TransactionRollbackError] = handle_rollback
    handlers[Exception] = handle_unexpected
    return handlers
