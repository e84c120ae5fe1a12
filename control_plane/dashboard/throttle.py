"""Failed sign-ins are counted per e-mail address and client address together, per e-mail address across all
clients, and per client address -- a client counted as `client_key` names it (an IPv6 client by its /64); past a
limit, sign-in waits (docs/dashboard.md)."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.keys import DashboardKeys
from shared.throttle import client_key

WINDOW_SECONDS = 15 * 60
PER_EMAIL_AND_CLIENT = 5  # guessing one account's password from one client (an IPv4 address or IPv6 /64)
# Guessing one account's password from many clients. One client adds at most PER_EMAIL_AND_CLIENT to it, so
# only guesses from 20 clients or more can keep the owner out; and an account's password meets at most 9,600
# guesses a day, however many clients guess.
PER_EMAIL = 100
PER_CLIENT = 20  # trying many accounts from one client

# KEYS: the counters; ARGV[1]: the window in seconds, ARGV[1 + i]: KEYS[i]'s limit. Returns the seconds to
# wait when a counter is at its limit (nothing counted), else 0 after counting the attempt in every counter.
# Counting before the password is checked, in one step, is what holds the limit: checks sent at the same time
# each take a place, and the one past the limit is refused before argon2 runs.
RESERVE = """
local wait = 0
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    wait = math.max(wait, redis.call('TTL', key), 1)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, 0, 'EX', ARGV[1], 'NX')
  redis.call('INCR', key)
end
return 0
"""
# KEYS[1]: a counter whose attempt was no failure; not re-created once its window has ended.
GIVE_BACK = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class SignInThrottle:
    def __init__(self, redis: aioredis.Redis, keys: DashboardKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._reserve = redis.register_script(RESERVE)
        self._give_back = redis.register_script(GIVE_BACK)

    # `email` is users.sign_in_email(): lowered as the account lookup lowers it, not by Python's rules.
    # The pair's key puts the client first: an address or network has no space in it, an e-mail address may.
    def _subjects(self, email: str, client: str) -> list[tuple[str, int]]:
        client = client_key(client)
        return [(self.keys.failed_sign_ins(f"pair:{client} {email}"), PER_EMAIL_AND_CLIENT),
                (self.keys.failed_sign_ins(f"email:{email}"), PER_EMAIL),
                (self.keys.failed_sign_ins(f"client:{client}"), PER_CLIENT)]

    async def reserve(self, email: str, client: str) -> int:
        """Count an attempt as failed before its password is checked; the seconds until this e-mail and client
        may try again instead (nothing counted) when any of their counts is at its limit. Then `succeeded`
        gives it back."""
        subjects = self._subjects(email, client)
        wait = await self._reserve(
            keys=[key for key, _ in subjects], args=[WINDOW_SECONDS, *(limit for _, limit in subjects)])
        return int(wait)

    async def succeeded(self, email: str, client: str) -> None:
        """The reserved attempt was right: this e-mail and client's count starts over; the e-mail's count across
        all clients and the client's lose this attempt (others' guesses stay counted)."""
        pair_key, *shared_keys = (key for key, _ in self._subjects(email, client))
        await self.redis.delete(pair_key)
        for key in shared_keys:
            await self._give_back(keys=[key])

    async def unchecked(self, email: str, client: str) -> None:
        """The reserved attempt ended before its password was checked: it counts in none of the counts."""
        for key, _ in self._subjects(email, client):
            await self._give_back(keys=[key])
