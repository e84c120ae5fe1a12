"""Keeps edge processes busy: keep-alive GETs of one path over many connections, until SIGTERM.

Run as its own process (`python -m tests.edge.load_generator HOST PATH CONNECTIONS URL...`), so that the
load competes with the edges for the CPU, as a real load would. Prints how many answers it got.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from urllib.parse import urlsplit

import uvloop

CONTENT_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


async def hammer(address: tuple[str, int], request: bytes, answered: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(*address)
            while not stop.is_set():
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = CONTENT_LENGTH.search(head)
                if length and int(length.group(1)):
                    await reader.readexactly(int(length.group(1)))
                answered[0] += 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await asyncio.sleep(0.05)


async def main(host: str, path: str, connections: int, urls: list[str]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: load-generator\r\n\r\n".encode()
    answered = [0]
    addresses = [(parts.hostname or "127.0.0.1", parts.port or 80) for parts in map(urlsplit, urls)]
    tasks = [asyncio.create_task(hammer(addresses[n % len(addresses)], request, answered, stop))
             for n in range(connections)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(answered[0], flush=True)  # noqa: T201 - the parent reads it


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
