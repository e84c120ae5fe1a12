"""API keys: made here, stored as SHA-256 hashes (docs/api.md, "Authentication")."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.ids import BASE62, new_id

SCOPES = ("qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write")
LIVE_PREFIX, TEST_PREFIX = "qr_live_", "qr_test_"
SECRET_LENGTH = 32  # base62 characters: about 190 bits


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    org_id: str
    livemode: bool
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    org_id: str
    secret: str
    livemode: bool
    scopes: list[str]


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_key(conn: asyncpg.Connection[Any], org_id: str, *, livemode: bool, scopes: list[str],
                     name: str = "") -> NewKey:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    secret = (LIVE_PREFIX if livemode else TEST_PREFIX) + "".join(
        secrets.choice(BASE62) for _ in range(SECRET_LENGTH))
    key_id = new_id("key")
    await conn.execute(
        "INSERT INTO api_keys (id, org_id, livemode, name, secret_hash, prefix, last4, scopes)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        key_id, org_id, livemode, name, hash_secret(secret), secret[:12], secret[-4:], scopes)
    return NewKey(key_id, org_id, secret, livemode, scopes)


async def find_key(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], secret: str) -> ApiKey | None:
    """The live (not revoked) key with this secret, if any."""
    if not secret.startswith((LIVE_PREFIX, TEST_PREFIX)):
        return None
    row = await db.fetchrow(
        "SELECT id, org_id, livemode, scopes FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL",
        hash_secret(secret))
    return None if row is None else ApiKey(row["id"], row["org_id"], row["livemode"], frozenset(row["scopes"]))


async def ensure_org(conn: asyncpg.Connection[Any], name: str) -> str:
    org_id: str = await conn.fetchval(
        "INSERT INTO organisations (id, name) VALUES ($1, $2)"
        " ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id", new_id("org"), name)
    return org_id
