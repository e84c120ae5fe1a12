"""The facts about one visitor that routing rules test (docs/rules.md).

The edge reads a scan's facts into one plain tuple (`Facts`) from the request it already parsed; a routing
tests them as they are, and builds a `Visitor` only for facts it has not seen (`Routing.index`). Each derived
fact comes from a bounded cache on first use only, so a code without rules (or whose rules test only the
country) pays nothing for parsing the user agent, the `Accept-Language` header or the query string.
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
    """Primary tags of the entries with q ≥ 0.5: `de-AT;q=0.8, en;q=0.3` → {"de"}. Only tags of 2–3 ASCII
    letters, the only ones a rule can name (shared.rules): a set holds no other text of the visitor's."""
    languages = set()
    for entry in accept_language.split(","):
        tag, _, params = entry.partition(";")
        primary = tag.strip().split("-", 1)[0].lower()
        if not (2 <= len(primary) <= 3 and primary.isascii() and primary.isalpha()) \
                or _quality(params) < MIN_LANGUAGE_QUALITY:
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


Facts = tuple[str, str, str | None, str, str]  # what the edge reads of every scan, as one plain tuple: the user
# agent, Accept-Language, country, and the keyed hashes of visitor (address and user agent) and of the address


class Visitor:
    """A scan's visitor as routing conditions read it: the scan's `Facts`, its query and its address. Derived
    facts (user agent traits, languages, the parsed query, the address's bits) come from bounded caches shared
    by all scans. Built only when a routing meets facts it has not seen (`Routing.index`): the scan path itself
    passes the plain tuple, which costs a fraction of an object."""
    __slots__ = ("client_ip", "facts", "query_string")

    def __init__(self, user_agent: str = "", accept_language: str = "", country: str | None = None,
                 query_string: bytes = b"", client_ip: str = "", visitor_hash: str = "", ip_hash: str = "") -> None:
        self.facts: Facts = (user_agent, accept_language, country, visitor_hash, ip_hash)
        self.query_string = query_string
        self.client_ip = client_ip

    @classmethod
    def of(cls, facts: Facts, query_string: bytes, client_ip: str) -> Visitor:
        visitor = cls.__new__(cls)
        visitor.facts, visitor.query_string, visitor.client_ip = facts, query_string, client_ip
        return visitor

    @property
    def user_agent(self) -> str:
        return self.facts[0]

    @property
    def accept_language(self) -> str:
        return self.facts[1]

    @property
    def country(self) -> str | None:
        return self.facts[2]

    @property
    def visitor_hash(self) -> str:
        return self.facts[3]  # keyed hash of IP and user agent: what makes a split sticky

    @property
    def agent(self) -> AgentTraits:
        return agent_traits(self.facts[0])

    @property
    def languages(self) -> frozenset[str]:
        return preferred_languages(self.facts[1])

    @property
    def query(self) -> dict[str, list[str]]:
        return parsed_query(self.query_string)

    @property
    def ip(self) -> Address | None:
        return address_bits(self.client_ip)
