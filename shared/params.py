"""The URL-param merge of docs/api.md §3.1.4, split into a precomputed part and a per-scan part.

Layers, later wins on a key collision: the destination's own query, the group's `url_params`, the
code's `url_params`, the visitor's query (minus the `qr` marker). A key keeps the position where it
first appeared, new keys are appended, and a repeated visitor key keeps all of its values.

Everything that reaches the Location header is percent-encoded here: stored values fully, visitor text
byte by byte (existing `%XX` escapes kept, everything outside the query-safe set encoded, so CR, LF,
`#`, spaces and non-ASCII bytes can never appear raw).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, quote_from_bytes, unquote_plus, urlsplit

SCAN_MARKER = "qr"

# RFC 3986 query characters minus the two separators; '%' stays so that valid escapes survive.
_RAW_SAFE = "!$'()*+,;:@/?-._~%"
_RAW_SAFE_VALUE = _RAW_SAFE + "="
# Stored params are plain text: encode everything that is not obviously harmless (including '+').
_TEXT_SAFE = "-._~!$'()*,;:@/?"
_LONE_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")

Pairs = tuple[tuple[str, tuple[str, ...]], ...]


# A query that encoding would leave as it is (the usual visitor query): skipping `quote` for it halves the
# cost of a scan at the edge.
_ALREADY_ENCODED = re.compile(rb"(?:[A-Za-z0-9!$'()*+,;:@/?\-._~=&]|%[0-9A-Fa-f]{2})*")


def _raw_part(raw: bytes, safe: str) -> str:
    return quote_from_bytes(_LONE_PERCENT.sub(b"%25", raw), safe)


def _identity(key: str) -> str:
    return unquote_plus(key) if "%" in key or "+" in key else key


def _encoded_query_pairs(query: str) -> list[tuple[str, str]]:
    return [(_identity(part.partition("=")[0]), part) for part in query.split("&") if part]


def raw_query_pairs(query: bytes) -> list[tuple[str, str]]:
    """Split a raw query into (decoded key, safely encoded `k=v` text), in order."""
    if _ALREADY_ENCODED.fullmatch(query):
        return _encoded_query_pairs(query.decode("ascii"))
    pairs = []
    for part in query.split(b"&"):
        if not part:
            continue
        key, sep, value = part.partition(b"=")
        identity = _identity(key.decode("utf-8", "replace"))
        text = _raw_part(key, _RAW_SAFE)
        if sep:
            text += "=" + _raw_part(value, _RAW_SAFE_VALUE)
        pairs.append((identity, text))
    return pairs


def encode_param(key: str, value: str) -> str:
    return f"{quote(key, _TEXT_SAFE)}={quote(value, _TEXT_SAFE)}"


def _group(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for key, text in pairs:
        grouped.setdefault(key, []).append(text)
    return grouped


# Locations rendered with a visitor's query, remembered per (template, query): a printed code is scanned with
# the query printed on it (`?qr=1`, campaign params), so a hot code renders each of its few queries once.
# Bounded in entries and in query length; a flood of distinct queries only empties it now and then.
RENDER_MEMO_ENTRIES = 4096
RENDER_MEMO_QUERY = 512  # bytes; longer visitor queries are rendered every time
_rendered: dict[tuple[int, bytes], tuple[LocationTemplate, bytes]] = {}


@dataclass(frozen=True, slots=True)
class LocationTemplate:
    """A destination with every stored layer merged; `render` adds the visitor's query."""

    prefix: str  # scheme://host/path, exactly as stored
    params: Pairs
    fragment: str  # "" or "#…"
    location: str  # the rendered URL without visitor params
    encoded: bytes = b""  # `location` as the bytes of a Location header

    @classmethod
    def build(cls, url: str, *layers: Iterable[tuple[str, str]]) -> LocationTemplate:
        parts = urlsplit(url)
        prefix = url.split("?", 1)[0].split("#", 1)[0]
        merged = _group(raw_query_pairs(parts.query.encode()))
        for layer in layers:
            for key, value in layer:
                merged[key] = [encode_param(key, value)]
        params: Pairs = tuple((k, tuple(v)) for k, v in merged.items())
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        location = _join(prefix, dict(params), fragment)
        return cls(prefix, params, fragment, location, _header_bytes(location))

    def render(self, visitor_query: bytes) -> str:
        if not visitor_query:
            return self.location
        visitor = _group(raw_query_pairs(visitor_query))
        visitor.pop(SCAN_MARKER, None)
        if not visitor:
            return self.location
        merged: dict[str, tuple[str, ...] | list[str]] = dict(self.params)
        merged.update(visitor)
        return _join(self.prefix, merged, self.fragment)

    def render_bytes(self, visitor_query: bytes) -> bytes:
        """`render` as a Location header's bytes, remembered per (template, query) in a bounded memo."""
        if not visitor_query:
            return self.encoded
        key = (id(self), visitor_query)  # the memo holds the template, so its id is not reused meanwhile
        known = _rendered.get(key)
        if known is not None and known[0] is self:
            return known[1]
        rendered = _header_bytes(self.render(visitor_query))
        if len(visitor_query) <= RENDER_MEMO_QUERY:
            if len(_rendered) >= RENDER_MEMO_ENTRIES:
                _rendered.clear()
            _rendered[key] = (self, rendered)
        return rendered


_PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))


def _header_bytes(location: str) -> bytes:
    """ASCII for a Location header: stored URLs are ASCII already (shared.urls); a destination template from the
    settings might not be, and its other characters are percent-encoded (UTF-8) rather than failing a scan."""
    return location.encode("ascii") if location.isascii() else quote(location, safe=_PRINTABLE).encode("ascii")


def _join(prefix: str, params: dict[str, tuple[str, ...]] | dict[str, tuple[str, ...] | list[str]],
          fragment: str) -> str:
    query = "&".join(text for texts in params.values() for text in texts)
    return f"{prefix}?{query}{fragment}" if query else f"{prefix}{fragment}"


def merge_url_params(url: str, group_params: Iterable[tuple[str, str]],
                     code_params: Iterable[tuple[str, str]], visitor_query: bytes = b"") -> str:
    return LocationTemplate.build(url, group_params, code_params).render(visitor_query)
