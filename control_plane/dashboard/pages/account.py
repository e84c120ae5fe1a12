"""A user's own account: changing one's password (an invited user's temporary one, first of all)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from control_plane.dashboard.throttle import SignInThrottle
from control_plane.dashboard.visit import Visit, page
from control_plane.services.users import change_own_password, sign_in_email
from shared.problems import Problem


def _page(visit: Visit, status: int = 200, errors: dict[str, str] | None = None, notice: str = "",
          headers: dict[str, str] | None = None) -> Response:
    response = visit.render("account.html", {"errors": errors or {}, "notice": notice}, status)
    response.headers.update(headers or {})
    return response


@page()
async def account(visit: Visit) -> Response:
    return _page(visit)


@page()
async def change_password(visit: Visit) -> Response:
    """The current password is asked for and counted like a sign-in's (docs/dashboard.md): a browser left signed
    in does not let whoever sits at it take the account over, nor guess the password without limit."""
    form, user = visit.form, visit.user
    new = form.get("new_password", "")
    if new != form.get("confirm_password", ""):
        return _page(visit, 422, {"confirm_password": "does not match the new password"})
    throttle = SignInThrottle(visit.stores.redis, visit.stores.keys)
    counted_as = await sign_in_email(visit.stores.db, user.email)
    client = visit.request.client.host if visit.request.client else "unknown"
    wait = await throttle.reserve(counted_as, client)
    if wait:
        return _page(visit, 429, {"current_password": f"too many wrong passwords; try again in {-(-wait // 60)}"
                                                      " minute(s)"}, headers={"Retry-After": str(wait)})
    try:
        epoch = await change_own_password(visit.stores.db, user.id, form.get("current_password", ""), new)
    except Problem as problem:  # the new password's length, refused before the current one is checked
        await throttle.unchecked(counted_as, client)
        return _page(visit, problem.status, {"new_password": problem.errors[0]["message"]})
    if epoch is None:  # counted already, by reserve()
        return _page(visit, 403, {"current_password": "is not your password"})
    await throttle.succeeded(counted_as, client)
    await visit.stores.sessions.set_epoch(visit.session, epoch)  # this browser stays signed in; the others end
    return _page(visit, notice="Your password is changed. Your other sessions are signed out.")


routes = [
    Route("/account", account, methods=["GET"]),
    Route("/account", change_password, methods=["POST"]),
]
