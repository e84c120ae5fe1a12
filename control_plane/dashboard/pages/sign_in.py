"""Sign-in, sign-out and the live/test switch."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.sessions import COOKIE
from control_plane.dashboard.templates import render
from control_plane.dashboard.throttle import SignInThrottle
from control_plane.dashboard.visit import CSRF_FIELD, Visit, page, stores
from control_plane.services.users import sign_in, sign_in_email

# Before a session exists the CSRF token is a double-submit cookie: a page of another site can post the
# form but cannot read or set this cookie, so it cannot sign a victim in to the attacker's account.
LOGIN_COOKIE = "scanroute_login"


def _secure(request: Request) -> bool:
    """`Secure` over https, and whenever CONTROL_PLANE_PUBLIC_URL is https: behind a TLS-terminating proxy that
    is not among CONTROL_PLANE_TRUSTED_PROXIES the request looks like plain http (docs/dashboard.md)."""
    return request.url.scheme == "https" or stores(request).services.settings.secure_cookies


def _next(request: Request) -> str:
    target = request.query_params.get("next", "")
    # Only a path of the dashboard: never another host (`//evil.example`) after signing in.
    return target if target.startswith("/app/") and not target.startswith("/app//") else "/app/"


def _login_page(request: Request, status: int = 200, error: str = "", email: str = "",
                headers: dict[str, str] | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", {"csrf": token, "error": error, "email": email,
                                              "next": _next(request)}, status)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/app/login", httponly=True, samesite="strict",
                        secure=_secure(request))
    response.headers.update(headers or {})
    return response


async def login_form(request: Request) -> Response:
    return _login_page(request)


async def login(request: Request) -> Response:
    form = await request.form(max_files=0, max_fields=10)
    email, password, sent = (str(form.get(name, "")) for name in ("email", "password", CSRF_FIELD))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not hmac.compare_digest(sent.encode(), cookie.encode()):
        return _login_page(request, 403, "The sign-in form expired. Please try again.", email)
    found = stores(request)
    throttle = SignInThrottle(found.redis, found.keys)
    client = request.client.host if request.client else "unknown"
    counted_as = await sign_in_email(found.db, email)
    wait = await throttle.reserve(counted_as, client)
    if wait:
        minutes = -(-wait // 60)
        return _login_page(request, 429, f"Too many failed sign-ins. Try again in {minutes} minute(s).", email,
                           {"Retry-After": str(wait)})
    user = await sign_in(found.db, email, password)
    if user is None:  # counted already, by reserve()
        return _login_page(request, 401, "The e-mail address or password is wrong.", email)
    await throttle.succeeded(counted_as, client)
    token = await found.sessions.create(user.id, user.session_epoch)
    response = RedirectResponse(_next(request), 303)
    # No Max-Age: a fixed one would end an active user's session 8 hours after sign-in; the server's idle
    # expiry, renewed by every page view, decides alone when a session ends (docs/dashboard.md).
    response.set_cookie(COOKIE, token, path="/app", httponly=True, samesite="lax", secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path="/app/login")
    return response


@page()
async def logout(visit: Visit) -> Response:
    await visit.stores.sessions.delete(visit.session)
    response = RedirectResponse("/app/login", 303)
    response.delete_cookie(COOKIE, path="/app", httponly=True, samesite="lax", secure=_secure(visit.request))
    return response


@page()
async def switch_mode(visit: Visit) -> Response:
    livemode = visit.form.get("mode") != "test"
    await visit.stores.sessions.set_mode(visit.session, livemode)
    back = visit.form.get("back", "/app/")
    return RedirectResponse(back if back.startswith("/app/") and not back.startswith("/app//") else "/app/", 303)


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/mode", switch_mode, methods=["POST"]),
]
