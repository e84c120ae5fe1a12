"""Logos: fetched once through the SSRF guard, checked, normalised to a small PNG and kept by digest."""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Any

import asyncpg
from PIL import Image

from control_plane.outbound import OutboundPolicy, OutboundRefused, fetch
from control_plane.problems import Problem

MAX_LOGO_BYTES = 1 << 20
LOGO_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
MAX_SOURCE_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding them
LOGO_SIDE = 512  # enough for a 0.3 logo on a 2048 px code


class InvalidLogo(Problem):
    def __init__(self, reason: str) -> None:
        super().__init__(422, f"The logo cannot be used: {reason}.", title="Invalid logo",
                         errors=[{"field": "design.logo.url", "message": reason}])


def normalise_logo(data: bytes) -> bytes:
    """Any accepted image → RGBA PNG at most LOGO_SIDE px a side."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as source:
                if source.width * source.height > MAX_SOURCE_PIXELS:
                    raise InvalidLogo(f"it is {source.width}×{source.height} pixels, more than allowed")
                image = source.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidLogo("it is not a readable PNG, JPEG, WebP or GIF image") from None
    image.thumbnail((LOGO_SIDE, LOGO_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def fetch_logo(url: str, policy: OutboundPolicy) -> bytes:
    try:
        fetched = await fetch(url, policy, max_bytes=MAX_LOGO_BYTES, content_types=LOGO_TYPES)
    except OutboundRefused as exc:
        raise InvalidLogo(str(exc)) from None
    return normalise_logo(fetched.body)


async def store_logo(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], png: bytes) -> str:
    digest = hashlib.sha256(png).hexdigest()
    await db.execute("INSERT INTO render_logos (sha256, png) VALUES ($1, $2) ON CONFLICT DO NOTHING", digest, png)
    return digest


async def load_logo(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], digest: str) -> bytes | None:
    png: bytes | None = await db.fetchval("SELECT png FROM render_logos WHERE sha256 = $1", digest)
    return png
