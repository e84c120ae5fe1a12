"""The facts about one visitor that routing rules test (docs/rules.md).

Built by the edge from the request it already parsed; each fact is derived on first use only, so a code
without rules (or whose rules test only the country) pays nothing for parsing the user agent, the
`Accept-Language` header or the query string.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from urllib.parse import parse_qs

from shared.user_agents import AgentTraits, agent_traits

MIN_LANGUAGE_QUALITY = 0.5
LANGUAGE_CACHE_ENTRIES = 4096  # the edge cuts Accept-Language to 256 characters
ADDRESS_CACHE_ENTRIES = 4096
QUERY_CACHE_ENTRIES = 4096  # printed codes are scanned with the same few queries (`?qr=1`)
Address = tuple[int, int]  # (IP version, the address as an integer)


@lru_cache(maxsize=LANGUAGE_CACHE_ENTRIES)
def preferred_languages(accept_language: str) -> frozenset[str]:
    """Primary tags of the entries with q ≥ 0.5: `de-AT;q=0.8, en;q=0.3` → {"de"}."""
    languages = set()
    for entry in accept_language.split(","):
        tag, _, params = entry.partition(";")
        primary = tag.strip().split("-", 1)[0].lower()
        if not primary.isalpha() or _quality(params) < MIN_LANGUAGE_QUALITY:
            continue  # "*" and malformed entries name no language
        languages.add(primary)
    return frozenset(languages)


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


@lru_cache(maxsize=ADDRESS_CACHE_ENTRIES)
def address_bits(client_ip: str) -> Address | None:
    """The client address as (version, integer) — what `ip` rules compare with their networks' bits —
    or None when it is not an IP address (e.g. a Unix socket peer)."""
    for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
        try:
            bits = int.from_bytes(socket.inet_pton(family, client_ip), "big")
        except (OSError, ValueError):
            continue
        if version == 6 and bits >> 32 == 0xFFFF:
            return 4, bits & 0xFFFFFFFF  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
        return version, bits
    return None


@lru_cache(maxsize=QUERY_CACHE_ENTRIES)
def parsed_query(query_string: bytes) -> dict[str, list[str]]:
    """The visitor's query, decoded (shared between scans with the same query: read it, never change it)."""
    return parse_qs(query_string.decode("latin-1"), keep_blank_values=True)


class Visitor:
    __slots__ = ("_agent", "_ip", "_ip_parsed", "_languages", "_query", "accept_language", "client_ip", "country",
                 "query_string", "user_agent", "visitor_hash")

    def __init__(self, user_agent: str = "", accept_language: str = "", country: str | None = None,
                 query_string: bytes = b"", client_ip: str = "", visitor_hash: str = "") -> None:
        self.user_agent = user_agent
        self.accept_language = accept_language
        self.country = country
        self.query_string = query_string
        self.client_ip = client_ip
        self.visitor_hash = visitor_hash  # keyed hash of IP and user agent: what makes a split sticky
        self._agent: AgentTraits | None = None
        self._languages: frozenset[str] | None = None
        self._query: dict[str, list[str]] | None = None
        self._ip: Address | None = None
        self._ip_parsed = False

    @property
    def agent(self) -> AgentTraits:
        if self._agent is None:
            self._agent = agent_traits(self.user_agent)
        return self._agent

    @property
    def languages(self) -> frozenset[str]:
        if self._languages is None:
            self._languages = preferred_languages(self.accept_language)
        return self._languages

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = parsed_query(self.query_string)
        return self._query

    @property
    def ip(self) -> Address | None:
        if not self._ip_parsed:
            self._ip_parsed = True
            self._ip = address_bits(self.client_ip)
        return self._ip
