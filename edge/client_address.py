"""The client's address (docs/api.md §3.4): the peer, or behind trusted proxies the right-most untrusted
address of `X-Forwarded-For`. Every proxy appends the address it received the request from, so entries
left of the first untrusted one were written by the client itself and prove nothing.

A socket bound to `[::]` takes IPv4 connections too, and names their peers `::ffff:a.b.c.d`: such an address
is the IPv4 address it carries, as a peer, as an `X-Forwarded-For` entry and as a `TRUSTED_PROXIES` match
(docs/edge.md, "Client address")."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Networks = tuple[IPv4Network | IPv6Network, ...]
MAPPED = "::ffff:"  # how a dual-stack socket names an IPv4 peer


def unmapped(address: str) -> str:
    """An IPv4-mapped IPv6 address as its IPv4 address; any other address as it is."""
    if address[:len(MAPPED)].lower() != MAPPED:
        return address
    parsed = _parsed(address)
    return str(parsed) if parsed is not None else address


def _parsed(address: str) -> IPv4Address | IPv6Address | None:
    """The address, an IPv4-mapped one as IPv4; None if it is not an IP address."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


PEER_MEMO_ENTRIES = 4096  # peers: behind proxies, a handful of addresses send every scan


class ClientAddress:
    def __init__(self, trusted: Networks) -> None:
        self.trusted = trusted
        self._peers: dict[str, bool] = {}  # peer → in `trusted`; a bounded memo

    def _is_trusted(self, address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    def trusts_peer(self, peer: str) -> bool:
        """Whether the TCP peer (`unmapped` already) is a trusted proxy: one dict lookup once it was seen, rather
        than a parse and a scan of the networks per request."""
        known = self._peers.get(peer)
        if known is None:
            known = self._is_trusted(_parsed(peer))
            if len(self._peers) >= PEER_MEMO_ENTRIES:
                self._peers.clear()
            self._peers[peer] = known
        return known

    def of(self, peer: str, forwarded_for: bytes | None) -> str:
        """`peer` is `unmapped` already: both servers unmap it once, where they read it."""
        if not self.trusted or not forwarded_for or not self.trusts_peer(peer):
            return peer
        client = peer
        for entry in reversed(forwarded_for.decode("latin-1").split(",")):
            entry = unmapped(entry.strip())
            address = _parsed(entry)
            if address is None:
                return client  # garbage where an address should be: the last hop we trust is all we know
            client = entry
            if not self._is_trusted(address):
                return entry
        return client

    def operator(self, peer: str, forwarded_for: bytes | None, allowed: Networks) -> bool:
        """Whether `/readyz` and `/metrics` answer this request (docs/edge.md, "Operations endpoints"): its client
        is in `allowed`. A request that a proxy forwarded names its origin in X-Forwarded-For; unless that proxy
        is trusted the origin is unknown, and the answer is no — a reverse proxy on the same host would otherwise
        open them to everyone it serves."""
        if forwarded_for:
            if not self._is_trusted(_parsed(peer)):
                return False
            peer = self.of(peer, forwarded_for)
        address = _parsed(peer)
        return address is not None and any(address in network for network in allowed)
