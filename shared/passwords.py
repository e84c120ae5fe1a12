"""Code and group passwords: argon2id hashes, checked by the edge off the event loop (docs/rules.md).

A check costs ~50 ms of CPU and 64 MiB on purpose (so a stolen hash is slow to guess); the edge must not
let that cost become a way to starve it. So checks run in a small thread pool (argon2 releases the GIL),
at most a few wait for it, and attempts are throttled per code and per client address: a flood of
guesses gets 429 answers that cost nothing, and scans of other codes never wait behind a hash.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal, NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import StringConstraints

from shared.throttle import KeyedThrottle, client_key

# One pass over 64 MiB (RFC 9106's memory-constrained choice, OWASP's 46 MiB/t=1 rounded up). The
# parameters travel inside each hash, so raising them later keeps old hashes verifiable.
HASHER = PasswordHasher(time_cost=1, memory_cost=64 * 1024, parallelism=1)
MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 4, 128
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH)]


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(encoded: str, password: str) -> bool:
    try:
        return HASHER.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


class Verdict(NamedTuple):
    result: Literal["right", "wrong", "throttled"]
    retry_after: float = 0.0  # seconds, when throttled


class PasswordChecks:
    """Bounded, throttled password verification for one edge process."""

    def __init__(self, workers: int = 1, max_in_flight: int = 4,
                 per_code: KeyedThrottle | None = None, per_client: KeyedThrottle | None = None) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        # A crowd at one venue may share one address and all type the password: failures alone count there.
        self.per_code = per_code or KeyedThrottle(burst=30, per_second=1.0)
        self.per_client = per_client or KeyedThrottle(burst=10, per_second=1 / 6)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password-check")

    async def check(self, code_id: str, client: str, encoded: str, password: str) -> Verdict:
        client = client_key(client)  # an IPv6 client by its /64
        if self.in_flight >= self.max_in_flight:
            return Verdict("throttled", 1.0)
        if not self.per_client.spend(client):
            return Verdict("throttled", self.per_client.retry_after(client))
        if not self.per_code.spend(code_id):
            self.per_client.refund(client)
            return Verdict("throttled", self.per_code.retry_after(code_id))
        self.in_flight += 1
        try:
            right = await asyncio.get_running_loop().run_in_executor(self._executor, verify_password, encoded,
                                                                      password[:MAX_PASSWORD_LENGTH * 4])
        finally:
            self.in_flight -= 1
        if right:
            self.per_client.refund(client)
            return Verdict("right")
        return Verdict("wrong")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
