"""Server-side dashboard sessions in Redis; the cookie holds only a random token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.keys import DashboardKeys

COOKIE = "scanroute_session"
IDLE_SECONDS = 8 * 3600  # a session unused for a working day signs out; every page view renews it


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    user_id: str
    livemode: bool
    csrf: str
    epoch: int  # the user's session epoch at sign-in; a reset, role change or removal since ends the session


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, redis: aioredis.Redis, keys: DashboardKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, user_id: str, epoch: int, livemode: bool = True) -> str:
        """A new session for the user; returns the cookie's token (never stored as such)."""
        token = secrets.token_urlsafe(32)
        key = self.keys.session(_hash(token))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"user_id": user_id, "livemode": int(livemode), "csrf": secrets.token_urlsafe(32),
                                    "epoch": epoch})
            pipe.expire(key, IDLE_SECONDS)
            await pipe.execute()
        return token

    async def load(self, token: str) -> Session | None:
        if not token or len(token) > 128:
            return None
        token_hash = _hash(token)
        key = self.keys.session(token_hash)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.expire(key, IDLE_SECONDS, xx=True)
            fields, _ = await pipe.execute()
        if not fields or b"user_id" not in fields:
            return None
        return Session(token_hash, fields[b"user_id"].decode(), fields[b"livemode"] == b"1", fields[b"csrf"].decode(),
                       int(fields.get(b"epoch", b"0")))

    async def set_mode(self, session: Session, livemode: bool) -> None:
        await self._set(session, "livemode", int(livemode))

    async def set_epoch(self, session: Session, epoch: int) -> None:
        """Keeps this session open across a change that ends the user's others (their own password reset)."""
        await self._set(session, "epoch", epoch)

    async def _set(self, session: Session, name: str, value: int) -> None:
        # HSET XX semantics: a session deleted meanwhile must not come back as a partial hash.
        key = self.keys.session(session.token_hash)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(key)
            pipe.hset(key, name, value)
            exists, _ = await pipe.execute()
        if not exists:
            await self.redis.delete(key)

    async def delete(self, session: Session) -> None:
        await self.redis.delete(self.keys.session(session.token_hash))
