"""Every Redis key and stream the processes share, in one place."""

from __future__ import annotations

from dataclasses import dataclass

# Consumer group of the ingest workers on the scan stream.
INGEST_GROUP = "ingest"
# Field holding the encoded event in every scan-stream entry.
SCAN_FIELD = b"e"
# Field naming the dropped cache entry in every invalidation-stream entry.
INVALIDATION_FIELD = b"k"
# Invalidation stream entries kept (approximate MAXLEN); an edge that falls further behind clears its cache.
INVALIDATION_MAXLEN = 10_000


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

    def code(self, domain: str, slug: str) -> str:
        """String: the code's edge row (JSON, see shared.rows)."""
        return f"{self.namespace}:code:{domain}:{slug}"

    def group(self, group_id: str) -> str:
        """String: the group's edge row (JSON, see shared.rows)."""
        return f"{self.namespace}:group:{group_id}"

    def rendered_image(self, image_key: str, size: int, format: str) -> str:
        """String: rendered image bytes of a content-addressed spec (control plane; expires, re-renderable)."""
        return f"{self.namespace}:img:{image_key}:{size}.{format}"

@dataclass(frozen=True, slots=True)
class ApiKeys:
    """Keys of the control plane's per-API-key state."""

    namespace: str

    def idempotency(self, owner: str, key: str) -> str:
        """String: JSON of the first response to (API key, Idempotency-Key); expires after 24 h."""
        return f"{self.namespace}:idem:{owner}:{key}"

    def rate_limit(self, owner: str) -> str:
        """Hash: the token bucket of one API key (tokens, last refill in ms)."""
        return f"{self.namespace}:rate:{owner}"


def cache_sync_cursor(namespace: str) -> str:
    """String: the last outbox `seq` whose cache writes the control plane has re-applied."""
    return f"{namespace}:cache-sync:seq"
