"""SSRF guard for requests the platform makes on a user's behalf (webhook deliveries, logo fetches).

A URL is checked when it is saved and again right before each request, because DNS can change in
between. The caller then connects to the very address that was checked (`PublicAddress.ip`), so a
second, different DNS answer cannot slip in between check and connect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import aiodns
import aiohttp
from yarl import URL

from shared.urls import InvalidURL, url_host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT = 5.0
DEFAULT_PORTS = {"https": 443, "http": 80}


class OutboundRefused(Exception):
    """The URL may not be requested; the message says why, in words fit for an API error."""


@dataclass(frozen=True, slots=True)
class PublicAddress:
    scheme: str
    host: str  # as written in the URL, lower-cased: the TLS server name and Host header
    port: int
    ip: str  # the checked address to connect to


# IPv6 prefixes whose last 32 bits are an IPv4 address that a translator or the stack may reach.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated ::a.b.c.d
# Not global, yet missing from Python 3.11's tables (is_private, is_reserved, is_global): documentation
# (RFC 9637). Site-local fec0::/10 (deprecated by RFC 3879, still used inside some networks) is `is_site_local`.
UNLISTED_SPECIAL_V6 = (ipaddress.IPv6Network("3fff::/20"),)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries: mapped, compatible, 6to4, Teredo (server and client), NAT64."""
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip.teredo is not None:
        found += ip.teredo
    if ip in NAT64 or ip in IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    return found


def is_forbidden_address(ip: IPAddress) -> bool:
    """Loopback, private, link-local (169.254.169.254 included), site-local, multicast, reserved or unspecified
    — also when embedded in an IPv6 address that a tunnel or translator would deliver to that IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # the stack itself connects to the IPv4 address
            return is_forbidden_address(ip.ipv4_mapped)
        if any(is_forbidden_address(v4) for v4 in embedded_ipv4(ip)):
            return True
        if ip.is_site_local or any(ip in network for network in UNLISTED_SPECIAL_V6):
            return True
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def address_kind(ip: IPAddress) -> str:
    """What a forbidden address is, in words. A refusal names the kind, never the address: it is stored and
    shown to the tenant, who could otherwise learn the internal addresses of names it cannot reach."""
    if isinstance(ip, ipaddress.IPv6Address) and not (ip.is_loopback or ip.is_unspecified):  # ::1 and :: are in ::/96
        if ip.ipv4_mapped is not None:
            return address_kind(ip.ipv4_mapped)
        if carried := [v4 for v4 in embedded_ipv4(ip) if is_forbidden_address(v4)]:
            return f"an IPv6 address carrying {address_kind(carried[0])}"
        if ip.is_site_local:
            return "a site-local address"
    kinds = ((ip.is_loopback, "a loopback"), (ip.is_link_local, "a link-local"), (ip.is_multicast, "a multicast"),
             (ip.is_unspecified, "an unspecified"), (ip.is_private, "a private"))
    return next((kind for test, kind in kinds if test), "a reserved") + " address"


def check_url(url: str, *, allow_http: bool) -> SplitResult:
    """The URL's parts if its form is acceptable; the address check comes later."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise OutboundRefused("is not a valid URL") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise OutboundRefused("must be an https URL")
    if not parts.hostname:
        raise OutboundRefused("must have a host")
    if parts.username or parts.password:
        raise OutboundRefused("must not contain credentials")
    return parts


_resolver: aiodns.DNSResolver | None = None


def dns_resolver() -> aiodns.DNSResolver:
    """The running event loop's resolver (a process runs one loop; each test starts its own).

    c-ares (aiodns), not `loop.getaddrinfo`: that runs the blocking system call in the loop's default thread
    pool, where a lookup that hangs keeps its thread after our timeout gave up on it, so one organisation's
    unanswered name server could fill the pool and fail every other lookup (docs/security.md). c-ares reads
    /etc/hosts and resolv.conf as getaddrinfo does, and a cancelled lookup holds nothing.
    """
    global _resolver
    loop = asyncio.get_running_loop()
    if _resolver is None or _resolver.loop is not loop:
        _resolver = aiodns.DNSResolver(loop=loop)
    return _resolver


async def close_dns_resolver() -> None:
    """Cancel the lookups under way: their answers would otherwise arrive after the event loop is gone."""
    global _resolver
    if _resolver is not None:
        await _resolver.close()
        _resolver = None


async def _addresses(host: str, port: int, stored: bool) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:  # IDNA 2008, as the Host header and TLS server name (yarl) and destination URLs (shared.urls) have it
        name = url_host(host, stored=stored)
    except InvalidURL as exc:  # an empty label, one over 63 characters ("a..example"), "xn--zz.example"
        raise OutboundRefused(str(exc)) from None
    try:
        answer = await asyncio.wait_for(dns_resolver().getaddrinfo(
            name, port=port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), RESOLVE_TIMEOUT)
    except (aiodns.error.DNSError, TimeoutError):
        raise OutboundRefused(f"host {host!r} does not resolve") from None
    # The scope id of a link-local IPv6 answer ("fe80::1%eth0") is not part of the address. IPv4 first: the
    # request connects to one address, and c-ares answers "localhost" with ::1 before 127.0.0.1 although a
    # developer's receiver commonly listens on 127.0.0.1 only.
    addresses = [ipaddress.ip_address(node.addr[0].decode().split("%")[0]) for node in answer.nodes]
    return sorted(addresses, key=lambda ip: ip.version)


async def resolve_public_address(url: str, *, allowed_hosts: frozenset[str], allow_http: bool,
                                 stored: bool = False) -> PublicAddress:
    """The address to connect to for `url`, or OutboundRefused.

    Every address the host resolves to must be public: a name that answers with one public and one
    private address is refused, since a later lookup could pick the private one. Hosts in
    `allowed_hosts` (e.g. 127.0.0.1 in development) skip the address check. `stored`: the URL is a stored one
    being used (a webhook delivery), whose host name was checked when it was saved, perhaps under an earlier
    release's rules: it is encoded, not refused by today's (shared.urls.url_host).
    """
    parts = check_url(url, allow_http=allow_http)
    host = (parts.hostname or "").lower()
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    addresses = await _addresses(host, port, stored)
    if not addresses:
        raise OutboundRefused(f"host {host!r} does not resolve")
    if host not in allowed_hosts:
        if forbidden := [ip for ip in addresses if is_forbidden_address(ip)]:
            raise OutboundRefused(f"resolves to {address_kind(forbidden[0])}, not a public one")
    return PublicAddress(parts.scheme, host, port, str(addresses[0]))


@dataclass(frozen=True, slots=True)
class Fetched:
    body: bytes
    content_type: str


def pinned_url(url: str, address: PublicAddress) -> URL:
    """`url` with its host replaced by the checked IP address; Host and TLS server name keep the name."""
    return URL(url).with_host(address.ip).with_port(address.port)


async def fetch(url: str, *, allowed_hosts: frozenset[str], allow_http: bool, max_bytes: int,
                content_types: Collection[str], timeout: float = RESOLVE_TIMEOUT) -> Fetched:
    """GET one resource (a logo) from a public address: no redirects, size, type and time limits."""
    address = await resolve_public_address(url, allowed_hosts=allowed_hosts, allow_http=allow_http)
    named = URL(url)
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                         trust_env=False) as session, \
                session.get(pinned_url(url, address), allow_redirects=False, headers={"host": named.raw_authority},
                            server_hostname=named.raw_host if address.scheme == "https" else None) as response:
            if 300 <= response.status < 400:
                raise OutboundRefused(f"redirects (HTTP {response.status}); give the final URL")
            if response.status != 200:
                raise OutboundRefused(f"answered HTTP {response.status}")
            content_type = response.content_type.lower()
            if content_type not in content_types:
                raise OutboundRefused(f"serves {content_type or 'no content type'}, not one of "
                                      f"{', '.join(sorted(content_types))}")
            body = await read_up_to(response.content, max_bytes + 1)
            if len(body) > max_bytes or (response.content_length or 0) > max_bytes:
                raise OutboundRefused(f"serves more than {max_bytes} bytes")
            return Fetched(body, content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise OutboundRefused(f"could not be fetched ({type(exc).__name__})") from None


async def read_up_to(stream: aiohttp.StreamReader, limit: int) -> bytes:
    # StreamReader.read(n) returns what has arrived so far (at most n), not n bytes: loop until EOF or limit.
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
