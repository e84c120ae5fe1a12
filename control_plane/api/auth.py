"""Every request's API key, checked with its scope (docs/api.md, "Authentication")."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from control_plane.services.keys import LIVE_PREFIX, TEST_PREFIX, ApiKey, hash_secret
from shared.problems import Problem


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Send an API key as `Authorization: Bearer qr_live_…`.",
                      headers={"WWW-Authenticate": 'Bearer realm="scanroute"'})
    return token.strip()


def invalid_key() -> Problem:
    return Problem(401, "The API key is not valid or was revoked.", headers={"WWW-Authenticate": "Bearer"})


async def active_key(db: Any, token: str) -> ApiKey | None:
    """The API key whose secret is `token`, unless it does not exist or was revoked."""
    if not token.startswith((LIVE_PREFIX, TEST_PREFIX)):
        return None
    row = await db.fetchrow(
        "SELECT id, org_id, livemode, scopes FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
        hash_secret(token))
    return None if row is None else ApiKey(row["id"], row["org_id"], row["livemode"], frozenset(row["scopes"]))


async def authenticate(request: Request, scope: str) -> ApiKey:
    """The request's API key, which must hold `scope`; 401 or 403 otherwise."""
    token = _bearer(request)
    key: ApiKey | None = request.scope.get("scanroute.key")
    if key is None:
        key = await active_key(request.app.state.db, token)
        if key is None:
            raise invalid_key()
        request.scope["scanroute.key"] = key
    if scope not in key.scopes:
        raise Problem(403, f"This API key lacks the `{scope}` scope.")
    return key
