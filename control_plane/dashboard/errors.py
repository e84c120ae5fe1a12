"""What the dashboard's pages do not catch themselves — a datastore down, an unknown address, a value the
database refuses — answered as a dashboard page with its security headers, not as the API's problem+json."""

from __future__ import annotations

import logging

import asyncpg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.dashboard.templates import render
from shared.problems import Problem
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)
RETRY_AFTER = {"Retry-After": "1"}  # seconds, as the API's 503s


def _problem(request: Request, exc: Exception) -> Problem | None:
    """The page to answer with, the exception logged as the API logs it; None for a bug (left to the app)."""
    where = f"{request.method} {request.url.path}"
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, HTTPException):
        detail = "There is no such page." if exc.status_code == 404 else str(exc.detail)
        return Problem(exc.status_code, detail, headers=exc.headers)
    if isinstance(exc, STORE_UNAVAILABLE + POSTGRES_TRANSIENT):
        log.warning("dependency unavailable for %s: %r", where, exc)
        return Problem(503, "The dashboard cannot reach its data stores right now. Try again in a moment.",
                       headers=RETRY_AFTER)
    if isinstance(exc, asyncpg.DataError):
        log.info("value refused by PostgreSQL on %s: %r", where, exc)
        return Problem(422, "A value you sent cannot be stored or compared (a NUL character, or text that is"
                            " not valid UTF-8, for example). Remove it and try again.")
    return None


def error_page(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The error page without the signed-in header: who is asking may be unknown (Redis down, say)."""
    response = render(request, "error.html", {"status": status, "message": message, "user": None}, status)
    response.headers.update(headers or {})
    return response


async def _answer(request: Request, exc: Exception) -> Response:
    problem = _problem(request, exc)
    assert problem is not None  # registered only for the classes _problem answers
    return error_page(request, problem.status, problem.detail, problem.headers)


HANDLERS = {cls: _answer for cls in (Problem, HTTPException, asyncpg.DataError,
                                     *STORE_UNAVAILABLE, *POSTGRES_TRANSIENT)}


class ErrorPages:
    """Around the /app Mount's routes. A bug still reaches the app's handler (logged with its traceback,
    re-raised) after the browser got a page; the rest is answered here and ends here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Each route answers what it raises with the handlers it finds here (Starlette's request_response); the
        # app's, set by its ExceptionMiddleware, would answer problem+json. In place, not a copy: the app's
        # metrics read the endpoint the router records in this scope.
        scope["starlette.exception_handlers"] = (HANDLERS, {})
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # outside any route (no route matched), or a bug
            if started:  # a download broken off midway: nothing more can be said to the browser
                raise
            request = Request(scope)
            problem = _problem(request, exc)
            if problem is None:
                await error_page(request, 500, "An unexpected error occurred; it has been logged.")(
                    scope, receive, send)
                raise
            await error_page(request, problem.status, problem.detail, problem.headers)(scope, receive, send)
