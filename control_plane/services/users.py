"""Dashboard users: organisation members with a role, passwords hashed with argon2 (docs/dashboard.md)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from asyncpg.pool import PoolConnectionProxy

from control_plane.services.keys import SCOPES
from shared.ids import new_id
from shared.problems import Problem, field_error

ROLES = ("viewer", "editor", "owner")
USERS_SCOPE = "users:write"  # managing the organisation's users: the dashboard's only scope the API has not
# What each role may do, in the API's scopes, so that the dashboard checks the same words as the API.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"qr:read", "webhooks:read"}),
    "editor": frozenset({"qr:read", "qr:write", "webhooks:read"}),
    "owner": frozenset(SCOPES) | {USERS_SCOPE},
}
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; a cap keeps a sign-in request from costing more than others
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_hasher = PasswordHasher()
# Verified when the e-mail is unknown, so that a sign-in takes as long whether or not the account exists.
_DUMMY_HASH = _hasher.hash("scanroute-no-such-user")

_COLUMNS = "u.id, u.org_id, o.name AS org_name, u.email, u.role, u.session_epoch, u.created_at"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    org_id: str
    org_name: str
    email: str
    role: str
    # Bumped by a password reset, a role change or a removal: sessions signed in before it end (docs/dashboard.md).
    session_epoch: int = 0

    @property
    def scopes(self) -> frozenset[str]:
        return ROLE_SCOPES[self.role]


def _user(row: asyncpg.Record) -> User:
    return User(row["id"], row["org_id"], row["org_name"], row["email"], row["role"], row["session_epoch"])


def normalise_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not EMAIL.fullmatch(email):
        raise field_error("email", "must be an e-mail address such as ana@example.com")
    return email


def check_role(role: str) -> str:
    if role not in ROLES:
        raise field_error("role", f"must be one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise field_error("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise field_error("password", f"must be at most {MAX_PASSWORD} characters")
    return password


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow (tens of ms): off the event loop, so other requests go on meanwhile.
    return await asyncio.to_thread(_hasher.hash, check_password(password))


async def _verify(password_hash: str, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_user(conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], org_id: str, email: str, role: str,
                      password: str) -> User:
    email, role = normalise_email(email), check_role(role)
    password_hash = await hash_password(password)
    try:
        row = await conn.fetchrow(
            f"WITH u AS (INSERT INTO users (id, org_id, email, role, password_hash) VALUES ($1, $2, $3, $4, $5)"
            f" RETURNING *) SELECT {_COLUMNS} FROM u JOIN organisations o ON o.id = u.org_id",
            new_id("usr"), org_id, email, role, password_hash)
    except asyncpg.UniqueViolationError:
        raise Problem(409, f"{email} already has an account.",
                      errors=[{"field": "email", "message": "already has an account"}]) from None
    assert row is not None
    return _user(row)


def _typed_email(email: str) -> str:
    return email.strip()[:254]


async def sign_in_email(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], email: str) -> str:
    """The typed e-mail as sign-in compares it: PostgreSQL's lower(), which may differ from Python's (`İ` is `i`
    there), so that every spelling that finds one account throttles as one, known or not (docs/dashboard.md)."""
    lowered: str = await db.fetchval("SELECT lower($1)", _typed_email(email))
    return lowered


async def sign_in(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], email: str, password: str) -> User | None:
    """The user with these credentials, or None; as slow for an unknown e-mail as for a wrong password."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS}, u.password_hash FROM users u JOIN organisations o ON o.id = u.org_id"
        " WHERE lower(u.email) = lower($1)", _typed_email(email))
    password = password[:MAX_PASSWORD]
    if row is None:
        await _verify(_DUMMY_HASH, password)
        return None
    if not await _verify(row["password_hash"], password):
        return None
    if _hasher.check_needs_rehash(row["password_hash"]):
        # Only over the hash just verified: a reset committed meanwhile must not get the old password back.
        await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1 AND password_hash = $3", row["id"],
                         await asyncio.to_thread(_hasher.hash, password), row["password_hash"])
    return _user(row)


async def get_user(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], user_id: str) -> User | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM users u JOIN organisations o ON o.id = u.org_id"
                            " WHERE u.id = $1", user_id)
    return _user(row) if row is not None else None


async def list_users(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], org_id: str) -> list[User]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM users u JOIN organisations o ON o.id = u.org_id"
                          " WHERE u.org_id = $1 ORDER BY u.created_at, u.id", org_id)
    return [_user(r) for r in rows]


Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def _check_owners_remain(conn: Connection, org_id: str, user_id: str) -> None:
    # Locks the organisation's owners too, so that two owners demoting each other cannot leave none.
    rows = await conn.fetch("SELECT id, role FROM users WHERE org_id = $1 AND (id = $2 OR role = 'owner')"
                            " ORDER BY id FOR UPDATE", org_id, user_id)
    target = next((r for r in rows if r["id"] == user_id), None)
    if target is None:
        raise Problem(404, "No such user.")
    if target["role"] == "owner" and sum(r["role"] == "owner" for r in rows) == 1:
        raise Problem(409, "An organisation keeps at least one owner: make someone else owner first.")


async def set_role(pool: asyncpg.Pool[Any], org_id: str, user_id: str, role: str) -> int:
    """Gives the user `role`; a change ends their sessions. Returns their session epoch after the change."""
    check_role(role)
    async with pool.acquire() as conn, conn.transaction():
        if role != "owner":
            await _check_owners_remain(conn, org_id, user_id)
        epoch: int | None = await conn.fetchval(
            "UPDATE users SET session_epoch = session_epoch + (role <> $3)::int, role = $3, updated_at = now()"
            " WHERE org_id = $1 AND id = $2 RETURNING session_epoch", org_id, user_id, role)
        if epoch is None:
            raise Problem(404, "No such user.")
        return epoch


async def remove_user(pool: asyncpg.Pool[Any], org_id: str, user_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _check_owners_remain(conn, org_id, user_id)
        await conn.execute("DELETE FROM users WHERE org_id = $1 AND id = $2", org_id, user_id)


async def reset_password(db: asyncpg.Pool[Any], org_id: str, user_id: str, password: str) -> int:
    """Sets a new password and ends every session signed in with the old one; returns the new session epoch."""
    password_hash = await hash_password(password)
    epoch: int | None = await db.fetchval(
        "UPDATE users SET password_hash = $3, session_epoch = session_epoch + 1, updated_at = now()"
        " WHERE org_id = $1 AND id = $2 RETURNING session_epoch", org_id, user_id, password_hash)
    if epoch is None:
        raise Problem(404, "No such user.")
    return epoch


async def change_own_password(db: asyncpg.Pool[Any], user_id: str, current: str, new: str) -> int | None:
    """A signed-in user's own change: `current` must be their password now. Ends their other sessions and returns
    the new session epoch; None when `current` is wrong (the caller counts it as a failed sign-in)."""
    check_password(new)
    password_hash: str | None = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    if password_hash is None or not await _verify(password_hash, current[:MAX_PASSWORD]):
        return None
    # Only over the hash just verified: a reset by an owner meanwhile wins, and `current` is then wrong.
    epoch: int | None = await db.fetchval(
        "UPDATE users SET password_hash = $3, session_epoch = session_epoch + 1, updated_at = now()"
        " WHERE id = $1 AND password_hash = $2 RETURNING session_epoch",
        user_id, password_hash, await hash_password(new))
    return epoch
