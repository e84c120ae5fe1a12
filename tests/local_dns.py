"""A real DNS server on 127.0.0.1 (UDP) for tests: answers A queries from a table, never answers the names
it is told to hang on — as an authoritative server that never answers does."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from shared.outbound import close_dns_resolver, dns_resolver

A, NOERROR, NXDOMAIN = 1, 0, 3


@dataclass
class LocalDNS:
    answers: dict[str, str] = field(default_factory=dict)  # name -> IPv4 address
    hanging: set[str] = field(default_factory=set)
    address: str = ""  # "127.0.0.1:port", as a resolver's name server


def _question(query: bytes) -> tuple[str, int, int]:
    """The first question's name and type, and where it ends."""
    labels, at = [], 12
    while query[at]:
        labels.append(query[at + 1:at + 1 + query[at]].decode("ascii").lower())
        at += 1 + query[at]
    qtype = struct.unpack_from("!H", query, at + 1)[0]
    return ".".join(labels), qtype, at + 5


def answer(dns: LocalDNS, query: bytes) -> bytes | None:
    name, qtype, end = _question(query)
    if name in dns.hanging:
        return None
    found = dns.answers.get(name)
    records = b""
    if found is not None and qtype == A:
        # TTL 0: never cached, so each lookup asks again (as the check before every attempt does)
        records = struct.pack("!HHHIH", 0xC00C, A, 1, 0, 4) + ipaddress.IPv4Address(found).packed
    rcode = NOERROR if found is not None else NXDOMAIN
    header = query[:2] + struct.pack("!HHHHH", 0x8180 | rcode, 1, 1 if records else 0, 0, 0)
    return header + query[12:end] + records


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, dns: LocalDNS) -> None:
        self.dns = dns
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        reply = answer(self.dns, data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@asynccontextmanager
async def local_dns() -> AsyncIterator[LocalDNS]:
    """A name server on localhost, asked by this event loop's outbound resolver until the block ends."""
    dns = LocalDNS()
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: _Protocol(dns), local_addr=("127.0.0.1", 0))
    dns.address = "127.0.0.1:{}".format(transport.get_extra_info("sockname")[1])
    dns_resolver().nameservers = [dns.address]
    try:
        yield dns
    finally:
        await close_dns_resolver()
        transport.close()
