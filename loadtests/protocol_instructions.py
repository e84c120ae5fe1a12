"""Instructions per request of the protocol server's connection alone (`python -m loadtests.protocol_instructions`):
`HttpConnection.data_received` on `bench-edge` (a)'s request, the scan handler replaced by one that answers at
once and the transport by one that discards, counted by valgrind's callgrind (BENCHMARKS.md, "Edge").

The script runs itself under callgrind twice, with N and 2N requests: (count(2N) - count(N)) / N is what one
request costs the parser's callbacks, the answer's slot and its write, whatever start-up costs.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import types
from pathlib import Path
from typing import Any

from edge.protocol import HttpConnection, Slot
from loadtests.bench_edge import HOT_REQUEST
from loadtests.callgrind import instructions_of


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000)

    def is_closing(self) -> bool:
        return False


class _Handler:
    def handle(self, conn: HttpConnection, slot: Slot, *request: object) -> None:
        conn.fill(slot, b"HTTP/1.1 302 Found\r\n\r\n")

    def rejected(self, status: int) -> None:
        raise AssertionError(f"the request was refused: {status}")


def requests(count: int) -> None:
    loop = asyncio.new_event_loop()
    server = types.SimpleNamespace(loop=loop, now=0.0, header_timeout=10.0, keepalive_timeout=10.0, draining=False,
                                   handler=_Handler(), date=b"", opened=lambda c: None, closed=lambda c: None)
    connection = HttpConnection(server)  # type: ignore[arg-type]
    connection.connection_made(_Transport())  # type: ignore[arg-type]
    for _ in range(count):
        connection.data_received(HOT_REQUEST)
    assert connection.requests == count and not connection.done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="N")
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)  # the measured child
    args = parser.parse_args()
    if args.run is not None:
        return requests(args.run)
    with tempfile.TemporaryDirectory(prefix="scanroute-protocol-") as folder:
        once, twice = (instructions_of("loadtests.protocol_instructions", "--run", str(n),
                                       out=Path(folder) / f"callgrind.{n}") for n in (args.requests, 2 * args.requests))
    print(f"protocol connection, (a)'s request: {(twice - once) / args.requests:,.0f} instructions per request "
          f"(callgrind; (2N - N) / N, N = {args.requests:,})")


if __name__ == "__main__":
    main()
