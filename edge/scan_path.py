"""What a scan does besides HTTP, shared by both servers (the protocol server and the ASGI app): which
code a request names, the client's address, and the scan event written before the answer."""

from __future__ import annotations

import hashlib
import re

import uuid_utils

from edge.client_address import ClientAddress
from edge.scan_target import Domains, slug_of
from shared.geo import CountryLookup
from shared.keys import RedisKeys
from shared.params import SCAN_MARKER
from shared.scan_event import finish_event
from shared.scan_plan import Decision
from shared.settings import EdgeSettings
from shared.visitor import Facts

_MARKER = re.compile(rb"(?:^|&)" + SCAN_MARKER.encode() + rb"(?:[=&]|$)")
TARGET_MEMO_ENTRIES = 4096  # (path, Host) pairs; at most ~70 + 255 bytes of key each, so ≤ ~2 MB
MARKER_MEMO_ENTRIES = 4096  # queries: a printed code's query is the same on every scan
MARKER_MEMO_QUERY = 512  # bytes; a longer query is searched every time
Headers = dict[bytes, bytes]  # lower-case names; a repeated header keeps its last value
Target = tuple[str, str, str]  # (domain, slug, the code's cache key)


class ScanPath:
    def __init__(self, settings: EdgeSettings, geo: CountryLookup | None, keys: RedisKeys) -> None:
        self.geo = geo
        self.keys = keys
        hash_key = hashlib.sha256(settings.scan_hash_secret.encode()).digest()  # BLAKE2b takes ≤ 64 bytes
        self._keyed = hashlib.blake2b(key=hash_key, digest_size=16)
        self.country_header = settings.trusted_country_header.encode() if settings.trusted_country_header else None
        self.domains = Domains()
        self._targets: dict[tuple[str, bytes], Target] = {}
        self._markers: dict[bytes, bool] = {}
        self.client_address = ClientAddress(settings.trusted_proxies)
        # Without TRUSTED_PROXIES the country header is believed from every peer, as configured; with them, only
        # from a trusted proxy: a visitor reaching the edge directly cannot pick its country (docs/edge.md).
        self._country_from_any_peer = not settings.trusted_proxies

    def target(self, path: str, host: bytes) -> Target | None:
        """(domain, slug, the code's cache key) if the request can name a code at all (docs/api.md §3.4), else
        None: a 404 at once.

        Valid targets are remembered (a bounded memo: a printed code is scanned by many phones); what fails
        validation is not, so hostile input only costs its check."""
        known = self._targets.get((path, host))
        if known is not None:
            return known
        slug = slug_of(path)
        if slug is None:
            return None
        domain = self.domains.of(host)
        if domain is None:
            return None
        if len(self._targets) >= TARGET_MEMO_ENTRIES:
            self._targets.clear()
        target = self._targets[(path, host)] = (domain, slug, self.keys.code(domain, slug))
        return target

    def facts(self, headers: Headers, ip: str, peer: str) -> Facts:
        """What the scan event records of the visitor and rules test, as one plain tuple: rules and split read it
        as it is (`Routing.index`); a `Visitor` object is built only for facts a routing has not seen."""
        user_agent = headers.get(b"user-agent", b"")[:512].decode("latin-1")
        # Keyed BLAKE2b (docs/concepts.md, "Hashes"): a MAC in one call, cheaper per scan than HMAC-SHA256, and
        # a copied keyed state is cheaper than a new one. Both hashes come from one state: the visitor's input
        # begins with the address, so its hash goes on from where the address's stopped — the same digests as
        # two separate hashes, for one state copy, encode and call fewer per scan (the compressions stay five:
        # BENCHMARKS.md, 2026-12-01).
        keyed = self._keyed.copy()
        keyed.update(ip.encode())
        ip_hash = keyed.hexdigest()
        keyed.update(b"\n" + user_agent.encode())
        return (user_agent, headers.get(b"accept-language", b"")[:256].decode("latin-1"),
                self.country(headers, ip, peer), keyed.hexdigest(), ip_hash)

    def event(self, method: str, query: bytes, headers: Headers, ip: str, facts: Facts, head: bytes,
              decision: Decision) -> bytes:
        """The scan event: the code's constant members encoded once (`head`), this scan's added."""
        user_agent, accept_language, country, visitor_hash, ip_hash = facts
        scan_id = uuid_utils.uuid7()
        marker = self._markers.get(query)
        if marker is None:
            marker = self._marker(query)
        referer = headers.get(b"referer")  # most scans have none (a camera app opens the URL)
        return finish_event(head, {
            "scan_id": str(scan_id), "ts_ms": scan_id.timestamp, "outcome": decision.outcome, "method": method,
            "marker": marker,
            "ip_hash": ip_hash, "visitor_hash": visitor_hash, "user_agent": user_agent,
            "referer": referer[:1024].decode("latin-1") if referer else "", "accept_language": accept_language,
            "country": country, "rule": decision.rule, "variant": decision.variant})

    def _marker(self, query: bytes) -> bool:
        """Whether the query carries the marker printed in every image; remembered per query (the regex
        costs more than a scan's lookup in the local cache), in a bounded memo."""
        # `query.find`, not `b"qr" in query`: bytes' `in` first tries its operand as an int, and the TypeError it
        # formats and discards costs more than the rest of this line (BENCHMARKS.md, 2026-11-30 "edge-cpu").
        marker = query.find(b"qr") >= 0 and _MARKER.search(query) is not None
        if len(query) <= MARKER_MEMO_QUERY:
            if len(self._markers) >= MARKER_MEMO_ENTRIES:
                self._markers.clear()
            self._markers[query] = marker
        return marker

    def country(self, headers: Headers, ip: str, peer: str) -> str | None:
        """A trusted CDN header first (from a trusted proxy, when TRUSTED_PROXIES is set: one memoised lookup of
        the peer, and only for a request that carries the header); else the GeoIP database, looked up here since
        IPs never leave the edge."""
        if self.country_header:
            raw = headers.get(self.country_header)
            if raw is not None and (self._country_from_any_peer or self.client_address.trusts_peer(peer)):
                value = raw.decode("latin-1").strip().upper()
                if len(value) == 2 and value.isalpha():
                    return value
        return self.geo.country(ip) if self.geo and ip else None
