"""The client's address (docs/api.md §3.4): the peer, or behind trusted proxies the right-most untrusted
address of `X-Forwarded-For`. Every proxy appends the address it received the request from, so entries
left of the first untrusted one were written by the client itself and prove nothing."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

Networks = tuple[IPv4Network | IPv6Network, ...]


class ClientAddress:
    def __init__(self, trusted: Networks) -> None:
        self.trusted = trusted

    def _is_trusted(self, address: str) -> bool:
        try:
            parsed = ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self.trusted)

    def of(self, peer: str, forwarded_for: bytes | None) -> str:
        if not self.trusted or not forwarded_for or not self._is_trusted(peer):
            return peer
        client = peer
        for entry in reversed(forwarded_for.decode("latin-1").split(",")):
            entry = entry.strip()
            try:
                ip_address(entry)
            except ValueError:
                return client  # garbage where an address should be: the last hop we trust is all we know
            client = entry
            if not self._is_trusted(entry):
                return entry
        return client
