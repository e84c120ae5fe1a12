"""Request bodies over the limit get a 413 before anything reads them (docs/security.md, "Request bodies").

Inside only the metrics and the rate limiter (which read no body): it refuses a declared `Content-Length` over
the limit without reading a byte, and counts the bytes of a streamed (chunked) body as they arrive, so neither
authentication, the idempotency store nor a route ever holds more than the limit in memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.api.problems import problem_response
from shared.problems import Problem

MAX_BODY = 1 << 20
MAX_IMPORT_BODY = 20 << 20  # POST /v1/imports takes a CSV file
# POST /app/imports: a pasted CSV of up to 1 MiB (checked by the page, docs/dashboard.md), sent url-encoded — a
# byte is at most 3 (`%0D%0A` for a line break the browser sent as CRLF) — with the form's few other fields.
MAX_PASTED_IMPORT_BODY = 3 * (1 << 20) + (16 << 10)


class BodyTooLarge(Problem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The body is larger than {limit} bytes.")


def body_limit(scope: Scope) -> int:
    if scope["method"] == "POST" and scope["path"] == "/v1/imports":
        return MAX_IMPORT_BODY
    if scope["method"] == "POST" and scope["path"] == "/app/imports":
        return MAX_PASTED_IMPORT_BODY
    return MAX_BODY


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit(scope)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            return await _refuse(limit, scope, receive, send)
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            # Raised outside a route (e.g. while the idempotency middleware reads the body).
            if started:
                raise
            await _refuse(limit, scope, receive, send)


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    # The client may still be sending: ask the server to close rather than drain a body we will not read.
    problem = BodyTooLarge(limit)
    problem.headers["Connection"] = "close"
    await problem_response(problem)(scope, receive, send)
