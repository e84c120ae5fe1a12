"""One HTTP attempt: guard the URL, connect to the checked address, never follow a redirect."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from shared.outbound import OutboundRefused, pinned_url, read_up_to, resolve_public_address
from shared.settings import OutboundSettings

EXCERPT_BYTES = 1024
USER_AGENT = "scanroute-webhooks/1"


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the receiver asks never to be called again."""
        return self.status_code == 410


def create_session(timeout: float, *, ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    """`ssl_context` replaces the system's trusted CAs (tests); certificates are always verified."""
    # force_close: a pooled connection is keyed by IP, and two names on one IP must not share TLS sessions.
    connector = aiohttp.TCPConnector(force_close=True, limit=0, ssl=ssl_context or True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout),
                                 trust_env=False, auto_decompress=True)


async def attempt(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str],
                  outbound: OutboundSettings) -> AttemptResult:
    started = time.monotonic()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        address = await resolve_public_address(url, allowed_hosts=outbound.allowed_hosts,
                                               allow_http=outbound.allow_http, stored=True)
        named = URL(url)
        async with session.post(pinned_url(url, address), data=body, allow_redirects=False,
                                headers={**headers, "host": named.raw_authority, "user-agent": USER_AGENT},
                                server_hostname=named.raw_host if address.scheme == "https" else None) as response:
            error = None if 200 <= response.status < 300 else f"HTTP {response.status}"
            try:
                excerpt = (await read_up_to(response.content, EXCERPT_BYTES)).decode("utf-8", "replace")
            except (TimeoutError, aiohttp.ClientError):  # the status decides; the body is only shown
                excerpt = ""
            return AttemptResult(response.status, elapsed_ms(), error, excerpt)
    except OutboundRefused as exc:
        return AttemptResult(None, elapsed_ms(), f"refused: the URL {exc}", "")
    except TimeoutError:
        return AttemptResult(None, elapsed_ms(), "timed out", "")
    except aiohttp.ClientError as exc:
        return AttemptResult(None, elapsed_ms(), f"{type(exc).__name__}: {exc}"[:500], "")
