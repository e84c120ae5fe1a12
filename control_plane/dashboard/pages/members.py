"""Owners manage their organisation's users: invite with a temporary password, change role, reset, remove."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.visit import Visit, page
from control_plane.services.users import (
    ROLES,
    USERS_SCOPE,
    create_user,
    list_users,
    remove_user,
    reset_password,
    set_role,
)
from shared.problems import Problem


async def _page(visit: Visit, status: int = 200, errors: dict[str, str] | None = None,
                notice: str = "") -> Response:
    members = await list_users(visit.stores.db, visit.user.org_id)
    return visit.render("members.html", {"members": members, "roles": ROLES, "errors": errors or {},
                                         "values": visit.form, "notice": notice}, status)


def _field_errors(problem: Problem) -> dict[str, str]:
    return {e["field"]: e["message"] for e in problem.errors} or {"": problem.detail}


@page(USERS_SCOPE)
async def members(visit: Visit) -> Response:
    return await _page(visit)


@page(USERS_SCOPE)
async def invite(visit: Visit) -> Response:
    form = visit.form
    try:
        created = await create_user(visit.stores.db, visit.user.org_id, form.get("email", ""),
                                    form.get("role", "viewer"), form.get("password", ""))
    except Problem as problem:
        return await _page(visit, problem.status, _field_errors(problem))
    visit.form = {}
    return await _page(visit, notice=f"{created.email} can now sign in with the temporary password.")


@page(USERS_SCOPE)
async def change(visit: Visit) -> Response:
    user_id = visit.request.path_params["user_id"]
    action = visit.form.get("action")
    try:
        epoch: int | None = None
        if action == "role":
            epoch = await set_role(visit.stores.db, visit.user.org_id, user_id, visit.form.get("role", ""))
        elif action == "password":
            epoch = await reset_password(visit.stores.db, visit.user.org_id, user_id, visit.form.get("password", ""))
        elif action == "remove":
            await remove_user(visit.stores.db, visit.user.org_id, user_id)
        else:
            raise Problem(400, "Unknown action.")
    except Problem as problem:
        return await _page(visit, problem.status, {f"{user_id}.{k}": v for k, v in _field_errors(problem).items()})
    if user_id == visit.user.id and epoch is not None:
        # The change ends the user's sessions; for an owner changing their own account, all but this one.
        await visit.stores.sessions.set_epoch(visit.session, epoch)
    return RedirectResponse("/app/users", 303)


routes = [
    Route("/users", members, methods=["GET"]),
    Route("/users", invite, methods=["POST"]),
    Route("/users/{user_id}", change, methods=["POST"]),
]
