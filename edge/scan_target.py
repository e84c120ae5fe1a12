"""Which code a request names, decided before any lookup (docs/api.md §3.4, docs/edge.md).

A request whose slug or `Host` could not belong to any code gets the 404 page at once: it never reaches
the local cache, Redis or PostgreSQL, so hostile input can neither fill a cache nor break a batch read.
"""

from __future__ import annotations

import ipaddress
import re

SLUG = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rb"(?P<name>(?:" + _LABEL + rb"\.)*" + _LABEL + rb")\.?|\[(?P<ipv6>[0-9A-Fa-f:.]{2,45})\]")
_PORT = re.compile(rb"[0-9]{1,5}")
MAX_HOST = 255
_MEMO_ENTRIES = 1024  # valid hosts remembered: a deployment serves a handful of domains
_REFUSED_ENTRIES = 1024  # refused hosts remembered, apart: hostile ones never push a valid one out


def slug_of(path: str) -> str | None:
    """`/abc` or `/abc/` → `abc`; None for anything that cannot be a slug."""
    slug = path[1:-1] if path.endswith("/") else path[1:]
    return slug if SLUG.fullmatch(slug) else None


def _domain(host: bytes) -> str | None:
    if not host or len(host) > MAX_HOST:
        return None
    name, colon, port = host.rpartition(b":") if not host.endswith(b"]") else (host, b"", b"")
    if not colon:
        name = host
    elif not _PORT.fullmatch(port) or int(port) > 65535:
        return None
    match = _HOST.fullmatch(name)
    if match is None:
        return None
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"].decode())
        except ValueError:
            return None
        canonical = name.lower()
    else:
        # No IDNA check: only what can never be registered is refused here, and a domain registered before the
        # control plane checked IDNA 2008 (`xn--i-7iq.ws`, from `i❤.ws`) may have any `xn--` label the pattern
        # takes (docs/edge.md). A name that is no domain is a miss of the lookup.
        canonical = match["name"].lower()
    return (canonical + (b":" + port if colon else b"")).decode("ascii")


class Domains:
    """`Host` header → the domain codes are stored under (lower case, no trailing dot), or None.

    A name in Unicode is no `Host` (browsers send its A-labels, which match the stored form). The verdict is
    memoised either way, each in its own bounded memo, so a `Host` is checked once, not per scan.
    """

    def __init__(self) -> None:
        self._memo: dict[bytes, str] = {}
        self._refused: set[bytes] = set()

    def of(self, host: bytes) -> str | None:
        domain = self._memo.get(host)
        if domain is not None:
            return domain
        if host in self._refused or len(host) > MAX_HOST:  # an over-long one is refused as cheaply, unremembered
            return None
        domain = _domain(host)
        if domain is None:
            if len(self._refused) >= _REFUSED_ENTRIES:
                self._refused.clear()
            self._refused.add(host)
            return None
        if len(self._memo) >= _MEMO_ENTRIES:
            self._memo.clear()
        self._memo[host] = domain
        return domain
