"""Logos: fetched once through the SSRF guard (or uploaded as a data: URL), checked, normalised to a small
PNG and kept by digest, which is also their public address: `/logos/{sha256}.png`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from PIL import Image

from control_plane.render.design import UPLOADED_LOGO
from shared.outbound import OutboundRefused, fetch
from shared.problems import Problem
from shared.settings import OutboundSettings

MAX_LOGO_BYTES = 1 << 20
# docs/rendering.md: PNG/JPEG/WebP/GIF and nothing else Pillow could open (BMP, TIFF, PSD, …); media type → format.
LOGO_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}
LOGO_TYPES = frozenset(LOGO_FORMATS)
MAX_SOURCE_SIDE = 4096  # px (docs/rendering.md), checked before the pixels are decoded
LOGO_SIDE = 512  # enough for a 0.3 logo on a 2048 px code


class InvalidLogo(Problem):
    def __init__(self, reason: str) -> None:
        super().__init__(422, f"The logo cannot be used: {reason}.", title="Invalid logo",
                         errors=[{"field": "design.logo.url", "message": reason}])


def normalise_logo(data: bytes, media_type: str) -> bytes:
    """An image of one of LOGO_TYPES, and truly of the type it was sent as → RGBA PNG at most LOGO_SIDE px a side."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=tuple(LOGO_FORMATS.values())) as source:
                # Cameras write JPEGs with a second picture, which Pillow names MPO: still a JPEG.
                format = "JPEG" if source.format == "MPO" else source.format
                if format != LOGO_FORMATS[media_type]:
                    raise InvalidLogo(f"it is a {format} image, not the {media_type} it was sent as")
                if max(source.size) > MAX_SOURCE_SIDE:
                    raise InvalidLogo(f"it is {source.width}×{source.height} pixels; at most "
                                      f"{MAX_SOURCE_SIDE}×{MAX_SOURCE_SIDE} are allowed")
                image = source.convert("RGBA")
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidLogo("it is not a readable PNG, JPEG, WebP or GIF image") from None
    image.thumbnail((LOGO_SIDE, LOGO_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def fetch_logo(url: str, outbound: OutboundSettings) -> bytes:
    try:
        # Plain http only where the operator allowed the host itself (local development and tests).
        allow_http = outbound.allow_http or (urlsplit(url).hostname or "").lower() in outbound.allowed_hosts
    except ValueError:  # urlsplit refuses "http://[::1/x"
        raise InvalidLogo("the URL is not a valid URL") from None
    try:
        fetched = await fetch(url, allowed_hosts=outbound.allowed_hosts, allow_http=allow_http,
                              max_bytes=MAX_LOGO_BYTES, content_types=LOGO_TYPES)
    except OutboundRefused as exc:
        raise InvalidLogo(f"the URL {exc}") from None
    return normalise_logo(fetched.body, fetched.content_type)


# Logos fetched for the request in progress, by URL: a fetch (DNS and download, up to ~10 s) must not run
# inside a transaction holding a pooled connection and row locks, so the services fetch before opening one.
_prefetched: ContextVar[dict[str, bytes] | None] = ContextVar("prefetched_logos", default=None)


async def prefetch_logos(designs: Iterable[Any], outbound: OutboundSettings) -> None:
    """Fetch the remote logos these raw designs name, now, for the rest of this request (task) to use."""
    fetched: dict[str, bytes] = {}
    for design in designs:
        logo = design.get("logo") if isinstance(design, dict) else None
        url = logo.get("url") if isinstance(logo, dict) else None
        if isinstance(url, str) and url.lower().startswith(("https:", "http:")) and url not in fetched:
            fetched[url] = await fetch_logo(url, outbound)
    _prefetched.set(fetched)


_DATA_URL = re.compile(r"data:(image/(?:png|jpeg|webp|gif));base64,([A-Za-z0-9+/=\s]+)", re.IGNORECASE)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """The media type and the bytes of an uploaded logo."""
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise InvalidLogo("a data: URL must be data:image/png|jpeg|webp|gif;base64,…")
    try:
        data = base64.b64decode(re.sub(r"\s", "", match.group(2)), validate=True)
    except binascii.Error:
        raise InvalidLogo("the data: URL is not valid base64") from None
    if len(data) > MAX_LOGO_BYTES:
        raise InvalidLogo(f"the resource is larger than {MAX_LOGO_BYTES} bytes")
    return match.group(1).lower(), data


async def obtain_logo(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], url: str,
                      outbound: OutboundSettings) -> bytes:
    """The normalised PNG for a logo URL: an earlier upload by digest, a data: URL, or a fetch."""
    if uploaded := UPLOADED_LOGO.fullmatch(url):
        png = await load_logo(db, uploaded.group(1))
        if png is None:
            raise InvalidLogo(f"no logo was uploaded as {url}")
        return png
    if url.lower().startswith("data:"):
        media_type, data = decode_data_url(url)
        return normalise_logo(data, media_type)
    if (png := (_prefetched.get() or {}).get(url)) is not None:
        return png
    return await fetch_logo(url, outbound)


async def store_logo(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], png: bytes) -> str:
    digest = hashlib.sha256(png).hexdigest()
    await db.execute("INSERT INTO render_logos (sha256, png) VALUES ($1, $2) ON CONFLICT DO NOTHING", digest, png)
    return digest


async def load_logo(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], digest: str) -> bytes | None:
    png: bytes | None = await db.fetchval("SELECT png FROM render_logos WHERE sha256 = $1", digest)
    return png
