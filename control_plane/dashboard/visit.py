"""One signed-in page view: who is asking, in which mode, and the checks every page shares."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import asyncpg
import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from control_plane.dashboard.sessions import COOKIE, Session, SessionStore
from control_plane.dashboard.templates import render
from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.users import User, get_user
from shared.keys import DashboardKeys, RedisKeys
from shared.problems import Problem

CSRF_FIELD = "csrf_token"


class Wiring(Protocol):
    """What the dashboard uses of the control plane's state (control_plane.api.state.AppState)."""

    @property
    def services(self) -> ServiceContext: ...
    @property
    def redis(self) -> aioredis.Redis: ...
    @property
    def keys(self) -> RedisKeys: ...


@dataclass(frozen=True, slots=True)
class Stores:
    services: ServiceContext
    redis: aioredis.Redis
    keys: DashboardKeys

    @property
    def db(self) -> asyncpg.Pool[Any]:
        return self.services.db

    @property
    def sessions(self) -> SessionStore:
        return SessionStore(self.redis, self.keys)


def stores(request: Request) -> Stores:
    wiring: Wiring = request.app.state.control_plane  # set by the control plane's lifespan
    return Stores(wiring.services, wiring.redis, DashboardKeys(wiring.keys.namespace))


@dataclass(slots=True)
class Visit:
    request: Request
    session: Session
    user: User
    stores: Stores
    form: dict[str, str] = field(default_factory=dict)
    form_items: list[tuple[str, str]] = field(default_factory=list)  # repeated fields (checkboxes) in order

    @property
    def principal(self) -> ApiKey:
        """The caller as the services know it: the user's organisation, mode and role's scopes."""
        return ApiKey(self.user.id, self.user.org_id, self.session.livemode, self.user.scopes)

    def values(self, name: str) -> list[str]:
        """Every value of a repeated form field, such as a group of checkboxes."""
        return [v for k, v in self.form_items if k == name]

    def can(self, scope: str) -> bool:
        return scope in self.user.scopes

    def render(self, name: str, context: dict[str, Any] | None = None, status: int = 200) -> Response:
        base = {"visit": self, "user": self.user, "livemode": self.session.livemode, "csrf": self.session.csrf,
                "can": self.can, "path": self.request.url.path}
        return render(self.request, name, {**base, **(context or {})}, status)

    def error(self, status: int, message: str) -> Response:
        return self.render("error.html", {"status": status, "message": message}, status)


Handler = Callable[[Visit], Awaitable[Response]]


def _csrf_ok(session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf.encode())


def page(scope: str = "qr:read", *,
         field_bytes: int = 1 << 20) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A dashboard endpoint: signed in, holding `scope`, and on POST carrying the session's CSRF token.
    `field_bytes`: the most a form field may take as sent (url-encoded), Starlette's 1 MB unless said."""

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            found = stores(request)
            session = await found.sessions.load(request.cookies.get(COOKIE, ""))
            user = await get_user(found.db, session.user_id) if session is not None else None
            if session is not None and (user is None or user.session_epoch != session.epoch):
                await found.sessions.delete(session)  # removed, or reset/role changed since: signed out
                user = None
            if session is None or user is None:
                return RedirectResponse(f"/app/login?next={quote(request.url.path)}", 303)
            visit = Visit(request, session, user, found)
            if request.method == "POST":
                form = await request.form(max_files=0, max_fields=2000, max_part_size=field_bytes)
                visit.form_items = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
                visit.form = dict(visit.form_items)
                sent = visit.form.get(CSRF_FIELD) or request.headers.get("x-csrf-token")
                if not _csrf_ok(session, sent):
                    return visit.error(403, "This form has expired or did not come from the dashboard. "
                                            "Reload the page and try again.")
            if not visit.can(scope):
                return visit.error(403, f"Your role ({user.role}) cannot do this.")
            try:
                return await handler(visit)
            except Problem as problem:
                return visit.error(problem.status, problem.detail)

        endpoint.__name__ = handler.__name__
        return endpoint

    return wrap
