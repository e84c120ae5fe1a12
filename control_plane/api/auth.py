"""Every request's API key, checked with its scope (docs/api.md §1)."""

from __future__ import annotations

from starlette.requests import Request

from control_plane.api.state import app_state
from control_plane.services.keys import ApiKey, find_key
from shared.problems import Problem

SCOPE_KEY = "scanroute.key"  # the key, once found, for the rest of the request


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Send an API key as `Authorization: Bearer qr_live_…`.",
                      headers={"WWW-Authenticate": 'Bearer realm="scanroute"'})
    return token.strip()


def invalid_key() -> Problem:
    return Problem(401, "The API key is not valid or was revoked.", headers={"WWW-Authenticate": "Bearer"})


async def authenticate(request: Request, scope: str) -> ApiKey:
    """The request's API key, which must hold `scope`; 401 or 403 otherwise."""
    token = _bearer(request)
    key: ApiKey | None = request.scope.get(SCOPE_KEY)
    if key is None:
        key = await find_key(app_state(request).db, token)
        if key is None:
            raise invalid_key()
        request.scope[SCOPE_KEY] = key
    if scope not in key.scopes:
        raise Problem(403, f"This API key lacks the `{scope}` scope.")
    return key
