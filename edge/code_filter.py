"""This process's copy of the filter of existing codes (shared/code_filter.py), and when it may be believed.

A slug the filter says does not exist is answered 404 at once: no Redis, no PostgreSQL, no cache entry. That
answer must never be wrong (a false 404 for a code that exists), so the copy counts only while it is known
complete and current (docs/freshness.md):

- the invalidation follower is caught up (the fence is open): before it confirms an entry that names codes'
  bits it sets them in the copy (`apply`), and before it confirms a `*negative*` entry it cannot apply (a new
  generation was built, a big write) it loads the whole filter again, so a write's 2xx comes after every edge
  holds a copy with its codes;
- Redis is up, and since this contact was made PostgreSQL has said that no repair is pending and the cache
  sync has re-applied the outbox up to its newest event (a Redis restored from an older file has an older
  filter: it counts once the re-application has put back the codes created since);
- the copy was loaded after that check (`epoch`), and Redis had one (a Redis restarted empty has none until
  the cache sync has rebuilt it).

Otherwise lookups go on as without a filter. The follower's thread loads the copy (one GET) and sets bits in
it; the event loop only reads it. Bits are only ever set, so a lookup racing with `apply` can miss only a key
of the entry being applied, whose write has not been confirmed by this process and so has not returned.
"""

from __future__ import annotations

import logging
import time

import redis

from edge.local_cache import Fence
from edge.redis_link import RedisLink
from shared.code_filter import FilterCopy, decode_delta

log = logging.getLogger(__name__)
RETRY = 1.0  # seconds between loads while Redis has no filter (a rebuild also announces itself)


class CodeFilter:
    def __init__(self, key: str, link: RedisLink, fence: Fence) -> None:
        self.key = key
        self.link = link
        self.fence = fence
        self.copy: FilterCopy | None = None  # replaced whole by the follower's thread
        self.epoch = 0  # moved by the event loop when Redis's filter was found complete since the last contact
        self.verified_contact = -1  # the link's contact count when it was
        self.answered = 0  # unknown slugs answered by the filter alone
        self.bypassed = 0  # local cache misses looked up without asking the copy: it did not count then
        self.loads = 0
        self.deltas = 0  # entries whose bits were set in the copy instead of loading it again
        self.missing = True  # Redis had no (readable) filter at the last load
        self._attempted = 0.0

    def absent(self, domain: str, slug: str) -> bool:
        """True only when the copy counts and says that no code has this (domain, slug)."""
        copy = self.copy
        if (copy is None or copy.tag != self.epoch or self.verified_contact != self.link.contacts
                or not self.link.up or self.fence.until <= time.monotonic()):
            self.bypassed += 1
            return False
        if copy.may_contain(domain, slug):
            return False
        self.answered += 1
        return True

    def trusted(self) -> bool:
        copy = self.copy
        return (copy is not None and copy.tag == self.epoch and self.verified_contact == self.link.contacts
                and self.link.up and self.fence.until > time.monotonic())

    def state(self) -> str:
        """For /readyz: why the filter does (not) answer."""
        if self.trusted():
            return "trusted"
        if not self.link.up:
            return "not used: Redis down"
        if self.verified_contact != self.link.contacts:
            return "not used: waiting for the cache sync to repair Redis"
        if self.copy is None:
            return "not used: Redis has none (being rebuilt)" if self.missing else "not used: loading"
        if self.copy.tag != self.epoch:
            return "not used: loading"
        return "not used: fenced"

    def verified(self, contact: int) -> None:
        """Event loop: Redis's filter is complete as of now for this contact; a copy loaded from now on counts."""
        if self.verified_contact != contact:
            self.epoch += 1
            self.verified_contact = contact

    # The follower's thread:

    def forget(self) -> None:
        """Codes may have been created unheard of: stop believing the copy, and load again at once."""
        self.copy = None
        self._attempted = -RETRY  # `wants_load` at once, whatever the clock reads

    def apply(self, delta: bytes | None) -> bool:
        """Set the bits an entry names in the copy; False when the copy must be loaded again instead: the entry
        names none (a rebuild, a big write, a writer that found no filter), the copy is gone (codes may have
        been missed), or it is another filter (generation and size) than the one the bits were set in."""
        copy = self.copy
        decoded = decode_delta(delta) if delta is not None and copy is not None else None
        if copy is None or decoded is None or decoded[0] != (copy.generation, copy.m):
            return False
        copy.add(decoded[1])
        self.deltas += 1
        return True

    def wants_load(self) -> bool:
        copy = self.copy
        if copy is not None:
            return copy.tag != self.epoch
        return time.monotonic() - self._attempted >= RETRY

    def load(self, client: redis.Redis) -> None:
        """One GET; raises what Redis raises (the copy is then gone: lookups go on without it)."""
        self.copy = None
        epoch = self.epoch  # read before the GET: a check that passes meanwhile asks for another load
        self._attempted = time.monotonic()
        raw = client.get(self.key)
        try:
            self.copy = FilterCopy(raw, epoch) if isinstance(raw, bytes) else None
        except ValueError:
            log.warning("Redis holds an unreadable code filter; looking codes up without it")
        self.missing = self.copy is None
        self.loads += 1

    @property
    def bytes(self) -> int:
        copy = self.copy
        return len(copy) if copy is not None else 0
