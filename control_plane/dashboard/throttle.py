"""Failed sign-ins are counted per e-mail address and per client address; past a limit, sign-in waits."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.keys import DashboardKeys

WINDOW_SECONDS = 15 * 60
PER_EMAIL = 5  # guessing one account's password
PER_CLIENT = 20  # trying many accounts from one address


class SignInThrottle:
    def __init__(self, redis: aioredis.Redis, keys: DashboardKeys) -> None:
        self.redis = redis
        self.keys = keys

    # `email` is users.sign_in_email(): lowered as the account lookup lowers it, not by Python's rules.
    def _subjects(self, email: str, client: str) -> list[tuple[str, int]]:
        return [(self.keys.failed_sign_ins(f"email:{email}"), PER_EMAIL),
                (self.keys.failed_sign_ins(f"client:{client}"), PER_CLIENT)]

    async def retry_after(self, email: str, client: str) -> int:
        """Seconds until this e-mail and client may try again; 0 when they may now."""
        subjects = self._subjects(email, client)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, _ in subjects:
                pipe.get(key)
                pipe.ttl(key)
            replies = await pipe.execute()
        waits = [max(int(ttl), 1) for (_, limit), count, ttl in zip(subjects, replies[::2], replies[1::2], strict=True)
                 if count is not None and int(count) >= limit]
        return max(waits, default=0)

    async def failed(self, email: str, client: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, _ in self._subjects(email, client):
                pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)  # the window starts at the first failure
                pipe.incr(key)
            await pipe.execute()

    async def succeeded(self, email: str) -> None:
        await self.redis.delete(self._subjects(email, "")[0][0])
