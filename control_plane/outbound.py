"""Outbound HTTP to user-given URLs (logo fetches, webhook deliveries) without SSRF.

Public API:
- `OutboundPolicy(allowed_hosts)` — hosts that may resolve to private addresses (and use plain http),
  from the `OUTBOUND_ALLOWED_HOSTS` setting; for local development and tests only.
- `check_url(url, policy, allow_http=False)` — scheme, host and literal-address checks, before any I/O.
- `await resolve_checked(host, port, policy)` — DNS answers, refused if any of them is not public.
- `is_public_address(ip)` — False for loopback, private, link-local, multicast, reserved, metadata …
- `guarded_session(policy, timeout)` — an aiohttp session whose connections go only to addresses that
  were checked (its resolver refuses the others), so DNS rebinding cannot slip past the check.
- `await fetch(url, policy, max_bytes=…, content_types=…)` — one GET: no redirects, size, type and time limits.
All refusals raise `OutboundRefused(reason)`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

DEFAULT_TIMEOUT = 5.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundRefused(Exception):
    """The URL may not be fetched; the message says why, in words fit for an API error."""


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    allowed_hosts: frozenset[str] = frozenset()

    def trusts(self, host: str) -> bool:
        return host.lower().strip("[]") in self.allowed_hosts


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    content_type: str


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    # is_global is False for loopback, RFC 1918, link-local (169.254.169.254 metadata), CGNAT, fc00::/7,
    # documentation and reserved ranges; multicast can be "global" and is refused on its own.
    return ip.is_global and not ip.is_multicast


def check_url(url: str, policy: OutboundPolicy, *, allow_http: bool = False) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise OutboundRefused("the URL is malformed") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http"):
        raise OutboundRefused("only https URLs are fetched")
    if not host:
        raise OutboundRefused("the URL has no host")
    if parts.scheme == "http" and not (allow_http or policy.trusts(host)):
        raise OutboundRefused("only https URLs are fetched")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("URLs with credentials are not fetched")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and not policy.trusts(host) and not is_public_address(literal):
        raise OutboundRefused(f"{host} is not a public address")
    return parts


async def resolve_checked(host: str, port: int, policy: OutboundPolicy,
                          timeout: float = DEFAULT_TIMEOUT) -> list[tuple[int, str]]:
    """(family, address) pairs for host; refused when any answer is private, unless the host is trusted."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError):
        raise OutboundRefused(f"{host} could not be resolved") from None
    answers: list[tuple[int, str]] = [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]
    if not policy.trusts(host):
        for _, address in answers:
            if not is_public_address(ipaddress.ip_address(address.split("%")[0])):
                raise OutboundRefused(f"{host} resolves to {address}, which is not a public address")
    if not answers:
        raise OutboundRefused(f"{host} could not be resolved")
    return answers


class _GuardedResolver(AbstractResolver):
    def __init__(self, policy: OutboundPolicy, timeout: float) -> None:
        self.policy = policy
        self.timeout = timeout

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        answers = await resolve_checked(host, port, self.policy, self.timeout)
        return [ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0,
                              flags=socket.AI_NUMERICHOST) for fam, address in answers]

    async def close(self) -> None:
        return None


def guarded_session(policy: OutboundPolicy, timeout: float = DEFAULT_TIMEOUT,
                    **session_args: Any) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=_GuardedResolver(policy, timeout), use_dns_cache=False,
                                     force_close=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                 **session_args)


async def fetch(url: str, policy: OutboundPolicy, *, max_bytes: int, content_types: Collection[str],
                timeout: float = DEFAULT_TIMEOUT) -> Fetched:
    """GET one resource; redirects are refused rather than followed (each hop would need the same check)."""
    check_url(url, policy)
    try:
        async with guarded_session(policy, timeout) as session, \
                session.get(url, allow_redirects=False) as response:
            if 300 <= response.status < 400:
                raise OutboundRefused(f"the URL redirects (HTTP {response.status}); give the final URL")
            if response.status != 200:
                raise OutboundRefused(f"the URL answered HTTP {response.status}")
            content_type = response.content_type.lower()
            if content_type not in content_types:
                raise OutboundRefused(f"the URL serves {content_type or 'no content type'}, "
                                      f"not one of {', '.join(sorted(content_types))}")
            if (response.content_length or 0) > max_bytes:
                raise OutboundRefused(f"the resource is larger than {max_bytes} bytes")
            body = await response.content.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise OutboundRefused(f"the resource is larger than {max_bytes} bytes")
            return Fetched(body, content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OutboundRefused(f"the URL could not be fetched ({type(exc).__name__})") from None
