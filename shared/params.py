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


@dataclass(frozen=True, slots=True)
class LocationTemplate:
    """A destination with every stored layer merged; `render` adds the visitor's query."""

    prefix: str  # scheme://host/path, exactly as stored
    params: Pairs
    fragment: str  # "" or "#…"
    location: str  # the rendered URL without visitor params

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
        return cls(prefix, params, fragment, _join(prefix, dict(params), fragment))

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


def _join(prefix: str, params: dict[str, tuple[str, ...]] | dict[str, tuple[str, ...] | list[str]],
          fragment: str) -> str:
    query = "&".join(text for texts in params.values() for text in texts)
    return f"{prefix}?{query}{fragment}" if query else f"{prefix}{fragment}"


def merge_url_params(url: str, group_params: Iterable[tuple[str, str]],
                     code_params: Iterable[tuple[str, str]], visitor_query: bytes = b"") -> str:
    return LocationTemplate.build(url, group_params, code_params).render(visitor_query)
