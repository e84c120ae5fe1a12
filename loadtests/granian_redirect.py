"""A reference for `make bench-edge`: granian's RSGI interface answering every request with a fixed 302
(`granian --interface rsgi loadtests.granian_redirect:app`)."""

from __future__ import annotations

from typing import Any

HEADERS = [("location", "https://example.com/menu?utm_campaign=fall24")]


async def app(scope: Any, protocol: Any) -> None:
    protocol.response_empty(302, HEADERS)
