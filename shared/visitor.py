"""The facts about one visitor that routing rules test (docs/rules.md).

Built by the edge from the request it already parsed; each fact is derived on first use only, so a code
without rules (or whose rules test only the country) pays nothing for parsing the user agent, the
`Accept-Language` header or the query string.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import parse_qs

from shared.user_agents import AgentTraits, agent_traits

MIN_LANGUAGE_QUALITY = 0.5
LANGUAGE_CACHE_ENTRIES = 4096  # the edge cuts Accept-Language to 256 characters
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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


class Visitor:
    __slots__ = ("_agent", "_ip", "_ip_parsed", "_languages", "_query", "accept_language", "client_ip", "country",
                 "query_string", "user_agent", "visitor_hash")

    def __init__(self, *, user_agent: str = "", accept_language: str = "", country: str | None = None,
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
        self._ip: IPAddress | None = None
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
            self._query = parse_qs(self.query_string.decode("latin-1"), keep_blank_values=True)
        return self._query

    @property
    def ip(self) -> IPAddress | None:
        if not self._ip_parsed:
            self._ip_parsed = True
            try:
                address = ipaddress.ip_address(self.client_ip)
                if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                    address = address.ipv4_mapped  # a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d
                self._ip = address
            except ValueError:
                self._ip = None  # not an address (e.g. a Unix socket peer): no `ip` rule matches
        return self._ip
