"""Token buckets per key (a code, a client address), bounded in memory (docs/rules.md, "Passwords"); and the key
every per-client count uses for a client address (docs/security.md, "Rate limits per address")."""

from __future__ import annotations

import time
from collections import OrderedDict
from ipaddress import IPv6Address, IPv6Network, ip_address

CLIENT_IPV6_PREFIX = 64  # one IPv6 host is normally given a whole /64 (SLAAC, privacy addresses)


def client_key(address: str) -> str:
    """What a per-client count counts `address` as: an IPv4 address as itself, an IPv4-mapped IPv6 address
    (`::ffff:a.b.c.d`, how a dual-stack socket names an IPv4 peer) as that IPv4 address, and any other IPv6
    address as its /64 -- else one machine, taking a fresh address of its prefix per attempt, would be any number
    of clients. Anything else (a Unix socket peer, "unknown") is its own key."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(IPv6Network((int(parsed) >> (128 - CLIENT_IPV6_PREFIX) << (128 - CLIENT_IPV6_PREFIX),
                                CLIENT_IPV6_PREFIX)))
    return str(parsed)


class KeyedThrottle:
    """`burst` attempts at once per key, refilled at `per_second`; the least recently used keys are
    forgotten past `max_keys` (a forgotten key starts full again, which only ever errs towards allowing)."""

    def __init__(self, burst: int, per_second: float, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.per_second)

    def allows(self, key: str, now: float | None = None) -> bool:
        """Whether `key` has an attempt left (without spending it)."""
        return self._tokens(key, time.monotonic() if now is None else now) >= 1.0

    def spend(self, key: str, now: float | None = None) -> bool:
        """Spend one attempt of `key`; False (and nothing spent) when none is left."""
        now = time.monotonic() if now is None else now
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            return False
        self._buckets[key] = (tokens - 1.0, now)
        self._buckets.move_to_end(key)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return True

    def refund(self, key: str, now: float | None = None) -> None:
        """Give back an attempt spent on something that turned out fine (a right password)."""
        if key in self._buckets:
            now = time.monotonic() if now is None else now
            self._buckets[key] = (min(float(self.burst), self._tokens(key, now) + 1.0), now)

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` has an attempt again."""
        tokens = self._tokens(key, time.monotonic() if now is None else now)
        return max(0.0, (1.0 - tokens) / self.per_second)
