"""Every Redis key and stream the processes share, in one place."""

from __future__ import annotations

from dataclasses import dataclass

# Consumer group of the ingest workers on the scan stream.
INGEST_GROUP = "ingest"
# Field holding the encoded event in every scan-stream entry.
SCAN_FIELD = b"e"
# Field naming the dropped cache entries in every invalidation-stream entry (keys joined by newlines).
INVALIDATION_FIELD = b"k"
# Keys named by one invalidation entry at most: a bulk change is a few entries, never one per code.
INVALIDATION_KEYS_PER_ENTRY = 500
# Invalidation stream entries kept (approximate MAXLEN); an edge that falls further behind clears its cache.
INVALIDATION_MAXLEN = 10_000
# The entry a creation appends instead of naming its keys: a new code can only be cached as "unknown".
NEGATIVE_ENTRIES = "*negative*"
# Field of a write's last entry naming its codes' bits in the filter of existing codes (shared/code_filter.py,
# `encode_delta`); a `*negative*` entry without it makes an edge load the whole filter again.
FILTER_DELTA_FIELD = b"f"
# Read-your-writes lease (docs/freshness.md), in seconds: a write waits at most this long for an edge that
# does not confirm; an edge answers from its local cache only within half of it after being caught up.
EDGE_LEASE = 1.0


@dataclass(frozen=True, slots=True)
class RedisKeys:
    namespace: str

    @property
    def scans(self) -> str:
        """Stream of scan events written by the edge, read by the ingest consumer group."""
        return f"{self.namespace}:scans"

    @property
    def scan_attempts(self) -> str:
        """Hash: scan-stream entry id → failed attempts to store it, counted for redelivered entries only."""
        return f"{self.namespace}:scans:attempts"

    @property
    def invalidations(self) -> str:
        """Stream of cache keys that changed, followed by every edge process with XREAD."""
        return f"{self.namespace}:invalidations"

    @property
    def edge_positions(self) -> str:
        """Hash: edge process id -> the last invalidation-stream id it has applied."""
        return f"{self.namespace}:edges:applied"

    @property
    def edge_leases(self) -> str:
        """Sorted set: edge process id, scored by the Redis time (ms) its lease ends without a heartbeat."""
        return f"{self.namespace}:edges:lease"

    def code(self, domain: str, slug: str) -> str:
        """String: the code's edge row (JSON, see shared.rows).

        The domain's length comes first, so that no (domain, slug) pair can spell another pair's key
        (`127.0.0.1` + `28080:abc` against `127.0.0.1:28080` + `abc`), whatever either contains.
        """
        return f"{self.namespace}:code:{len(domain)}:{domain}:{slug}"

    @property
    def code_filter(self) -> str:
        """String: the membership filter of every (domain, slug) that has a code (shared/code_filter.py)."""
        return f"{self.namespace}:filter:codes"

    @property
    def code_filter_next(self) -> str:
        """String: the code filter being rebuilt from PostgreSQL; renamed to `code_filter` when complete."""
        return f"{self.namespace}:filter:codes:next"

    def group(self, group_id: str) -> str:
        """String: the group's edge row (JSON, see shared.rows)."""
        return f"{self.namespace}:group:{group_id}"

    def rendered_image(self, image_key: str, size: int, format: str) -> str:
        """String: rendered image bytes of a content-addressed spec (control plane; expires, re-renderable)."""
        return f"{self.namespace}:img:{image_key}:{size}.{format}"

    def readable_size(self, image_key: str, size: int) -> str:
        """String: decimal px; `size` once the spec's image at `size` was decoded, else a size that decodes
        (control plane; expires with the rendered bytes)."""
        return f"{self.namespace}:img:{image_key}:{size}.reads"


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """Keys of the control plane's per-API-key state."""

    namespace: str

    def idempotency(self, owner: str, key: str) -> str:
        """String: JSON of the first response to (API key, Idempotency-Key); expires after 24 h."""
        return f"{self.namespace}:idem:{owner}:{key}"

    def rate_limit(self, owner: str) -> str:
        """Hash: one token bucket (tokens, last refill in ms): `key:{hash of the API key}`, or
        `anonymous:{address}` / `public:{address}` for traffic without a (valid) key."""
        return f"{self.namespace}:rate:{owner}"


@dataclass(frozen=True, slots=True)
class DashboardKeys:
    """Keys of the dashboard's sign-in state (docs/dashboard.md)."""

    namespace: str

    def session(self, token_hash: str) -> str:
        """Hash: one signed-in session (user id, mode, CSRF token); keyed by the SHA-256 of the cookie's token,
        so that reading Redis does not hand out sessions. Expires after the idle timeout, renewed on use."""
        return f"{self.namespace}:dash:session:{token_hash}"

    def failed_sign_ins(self, subject: str) -> str:
        """String: failed sign-ins in the current window (expires) of one e-mail address from one client
        (`pair:{client} {email}`), of one e-mail address (`email:{email}`) or of one client (`client:{client}`)."""
        return f"{self.namespace}:dash:failed:{subject}"


def cache_sync_cursor(namespace: str) -> str:
    """String: the cache sync's position in the outbox, `{xid}:{seq}` (shared.outbox.OutboxPosition): every
    event at or before it has been re-applied to this Redis."""
    return f"{namespace}:cache-sync:position"


def legacy_cache_sync_cursor(namespace: str) -> str:
    """String: the last outbox `seq` re-applied, as versions before migration 0017 kept it (read once, on
    upgrade)."""
    return f"{namespace}:cache-sync:seq"
