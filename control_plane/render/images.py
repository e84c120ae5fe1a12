"""What the QR-code routes call: payloads, design checks, content-addressed image URLs, cached renders.

Integration API (used by control_plane/routes/qr_codes.py):
- `payload_for(row, settings)` — the text a code encodes: `short_url?qr=1` (dynamic) or its static content.
- `await check_design(db, settings, design, payload)` — normalised design dict, or a 422 problem.
- `await sync_design(conn, settings, code_id)` — after an insert or a design/content change: checks the
  stored design against the code's payload, stores it normalised and mints its image URL.
- `await sync_designs(conn, settings, code_ids)` — the same for codes minted in bulk, in one pass.
- `image_url(settings, payload, design)`, `preview_url(…)` — the public, content-addressed URLs.
- `await with_image_secret(settings, db)` — settings with the URL key loaded (a job worker, a CLI command).
- `await read_image_secret(settings, db, stop)` — the same, waiting for PostgreSQL (the app's lifespan task).
- `url_secret(settings)` — the URL key, or a 503 problem while it is not loaded yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import replace
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
import redis.exceptions

from control_plane.render.content import encode_static
from control_plane.render.design import Design, design_dict, parse_design
from control_plane.render.logo import load_logo, obtain_logo, store_logo
from control_plane.render.output import render_bytes, render_raster
from control_plane.render.raster import encode
from control_plane.render.scannability import (
    check_module_pixels,
    check_readable,
    check_scannable,
    checked_size,
    readable_size,
)
from shared.keys import RedisKeys
from shared.problems import Problem
from shared.processes import Backoff
from shared.settings import ControlPlaneSettings, Secret
from shared.unavailable import POSTGRES_TRANSIENT, STORE_UNAVAILABLE

log = logging.getLogger(__name__)
SECRET_READ_TIMEOUT = 5.0  # seconds for the one SELECT of the URL key
RENDER_TTL = 7 * 24 * 3600  # seconds a rendered image stays in Redis; it can always be rendered again
HASH_LENGTH = 32  # hex characters: 128 bits, unguessable


def dynamic_payload(settings: ControlPlaneSettings, domain: str, slug: str) -> str:
    # `qr=1` marks the scan as a camera scan of the printed code (the edge strips it from the destination).
    return f"{settings.public_scheme}://{domain}/{slug}?qr=1"


def payload_for(row: Any, settings: ControlPlaneSettings) -> str:
    if row["kind"] == "dynamic":
        return dynamic_payload(settings, row["domain"], row["slug"])
    return encode_static(row["type"], row["content"], stored=True)  # checked when written (docs/api.md §2.1)


def effective_design(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A code's stored design, or the defaults for a code that never had one."""
    return stored if stored else design_dict(parse_design(None))


async def with_image_secret(settings: ControlPlaneSettings,
                            db: asyncpg.Pool[Any] | asyncpg.Connection[Any]) -> ControlPlaneSettings:
    """`settings` with the image-URL secret filled in from the database when IMAGE_URL_SECRET is unset."""
    if settings.image_url_secret is not None:
        return settings
    secret: str = await db.fetchval("SELECT secret FROM render_secret", timeout=SECRET_READ_TIMEOUT)
    return replace(settings, image_url_secret=Secret(secret))


async def read_image_secret(settings: ControlPlaneSettings, db: asyncpg.Pool[Any],
                            stop: asyncio.Event) -> ControlPlaneSettings | None:
    """`with_image_secret`, once PostgreSQL answers; None if stopped first. The control plane starts while
    PostgreSQL is away and answers 503 for what needs the key meanwhile (docs/operations.md, "Processes")."""
    backoff = Backoff(longest=2.0)
    while not stop.is_set():
        try:
            return await with_image_secret(settings, db)
        except (*STORE_UNAVAILABLE, *POSTGRES_TRANSIENT) as exc:
            await backoff.wait(stop, log, "image URLs wait for the database to read their secret", exc)
    return None


def url_secret(settings: ControlPlaneSettings) -> str:
    """The key of image and download URLs; a 503 while the control plane has not read it from PostgreSQL yet."""
    if settings.image_url_secret is None:
        raise Problem(503, "Image and download URLs are not available until the database answers; retry shortly.",
                      headers={"Retry-After": "1"})
    return settings.image_url_secret


def image_key(settings: ControlPlaneSettings, payload: str, design: dict[str, Any]) -> str:
    spec = orjson.dumps({"payload": payload, "design": design}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(url_secret(settings).encode(), spec, hashlib.sha256).hexdigest()[:HASH_LENGTH]


def image_url(settings: ControlPlaneSettings, payload: str, design: dict[str, Any] | None) -> str:
    """Absolute, so that it can be handed to a print shop or put in an e-mail as it is."""
    design = effective_design(design)
    return f"{settings.public_url}/i/{image_key(settings, payload, design)}.{design['format']}"


def preview_url(settings: ControlPlaneSettings, payload: str, design: dict[str, Any] | None) -> str:
    return f"{settings.public_url}/qr/{image_key(settings, payload, effective_design(design))}"


async def check_design(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], settings: ControlPlaneSettings,
                       raw: dict[str, Any] | None, payload: str) -> dict[str, Any]:
    """Validate, fill in defaults, fetch the logo and prove the result scans; 422 problems otherwise."""
    design = parse_design(raw)
    logo_png = None
    if design.logo is not None:
        logo_png = await obtain_logo(db, design.logo.url, settings.outbound)
        design.logo.sha256 = await store_logo(db, logo_png)
        if design.logo.url.lower().startswith("data:"):  # keep the upload once, not in every code object
            design.logo.url = f"/logos/{design.logo.sha256}.png"
    # Rendering and decoding take tens of milliseconds of CPU: keep them off the event loop.
    await asyncio.to_thread(check_scannable, payload, design, logo_png)
    return design_dict(design)


def download_size_check(payload: str, design: dict[str, Any], size: int) -> None:
    """A download at another size than the design's (docs/rendering.md): a 422 on `size` where modules would be
    too small to scan; the design itself was only checked at its own size."""
    check_module_pixels(payload, Design.model_validate(design), size, "size")


def proven_at(design: dict[str, Any], size: int) -> bool:
    """Whether check_design already decoded the design at `size`; any other size is decoded on first download."""
    return size == checked_size(Design.model_validate(design))


def _readable(payload: str, design: Design, size: int, logo: bytes | None) -> int:
    return readable_size(payload, design, size, render_raster(payload, design, size, logo), logo)


def _render(payload: str, design: Design, format: str, size: int, logo: bytes | None,
            verify: bool) -> tuple[bytes, int | None]:
    """The image and, with `verify`, the size that reads: `size` when this image decodes. An SVG is proven by its
    raster twin at the same size (docs/rendering.md)."""
    if not verify:
        return render_bytes(payload, design, format, size, logo), None
    raster = render_raster(payload, design, size, logo)
    readable = readable_size(payload, design, size, raster, logo)
    if readable != size:
        return b"", readable
    body = render_bytes(payload, design, format, size, logo) if format == "svg" else encode(raster, format)
    return body, readable


async def mint(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], settings: ControlPlaneSettings, payload: str,
               design: dict[str, Any] | None) -> str:
    """Record what an image URL stands for, so the public route can render it; returns the hash."""
    design = effective_design(design)
    key = image_key(settings, payload, design)
    await db.execute("INSERT INTO render_specs (hash, payload, design) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                     key, payload, design)
    return key


async def sync_design(conn: asyncpg.Connection[Any], settings: ControlPlaneSettings, code_id: str) -> None:
    await sync_designs(conn, settings, [code_id])


async def sync_designs(conn: asyncpg.Connection[Any], settings: ControlPlaneSettings, code_ids: list[str]) -> None:
    """Check each distinct stored design once, store it normalised, and mint every code's image URL.

    Codes minted together share one design and slug length, so one proof covers them all: same version,
    same geometry, the same modules hidden by a logo.
    """
    rows = await conn.fetch("SELECT id, kind, type, content, domain, slug, design FROM qr_codes"
                            " WHERE id = ANY($1::text[]) ORDER BY id", code_ids)
    checked: dict[bytes, dict[str, Any]] = {}
    ids, payloads, designs = [], [], []
    for row in rows:
        payload = payload_for(row, settings)
        raw = orjson.dumps(row["design"], option=orjson.OPT_SORT_KEYS)
        if raw not in checked:
            checked[raw] = await check_design(conn, settings, row["design"], payload)
        ids.append(row["id"])
        payloads.append(payload)
        designs.append(checked[raw])
    await conn.execute("UPDATE qr_codes c SET design = d.design FROM unnest($1::text[], $2::jsonb[]) AS d(id, design)"
                       " WHERE c.id = d.id AND c.design IS DISTINCT FROM d.design", ids, designs)
    await conn.execute("INSERT INTO render_specs (hash, payload, design)"
                       " SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[]) ON CONFLICT DO NOTHING",
                       [image_key(settings, p, d) for p, d in zip(payloads, designs, strict=True)], payloads,
                       designs)


async def load_spec(db: asyncpg.Pool[Any], key: str) -> tuple[str, dict[str, Any]] | None:
    row = await db.fetchrow("SELECT payload, design FROM render_specs WHERE hash = $1", key)
    return None if row is None else (row["payload"], row["design"])


class RenderCache:
    """Rendered bytes in Redis by (hash, size, format), and whether a size decodes by (hash, size); a Redis outage
    only costs a re-render (and a decode)."""

    def __init__(self, db: asyncpg.Pool[Any], redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.db = db
        self.redis = redis
        self.keys = keys

    async def render(self, key: str, payload: str, design: dict[str, Any], format: str, size: int, *,
                     verify: bool = False) -> bytes:
        """With `verify`, a 422 on `size` unless the image at `size` decodes (proven once per hash and size)."""
        image_key, verdict_key = self.keys.rendered_image(key, size, format), self.keys.readable_size(key, size)
        cached, verdict = await self._get(image_key, verdict_key if verify else None)
        if verdict is not None:
            check_readable(size, int(verdict))
        if cached is not None and (verdict is not None or not verify):
            return cached
        parsed, logo = await self._parsed(design)
        image, readable = await asyncio.to_thread(_render, payload, parsed, format, size, logo,
                                                  verify and verdict is None)
        if readable is not None:
            await self._set(key, verdict_key, str(readable).encode())
            check_readable(size, readable)
        await self._set(key, image_key, image)
        return image

    async def readable(self, key: str, payload: str, design: dict[str, Any], size: int) -> int:
        """`size` if the image at `size` decodes, else a size that does (`readable_size`): the verdict a
        download gets, decoded once per hash and size and cached with it. For what is rendered elsewhere (the
        PNGs of a zip export, docs/exports.md)."""
        verdict_key = self.keys.readable_size(key, size)
        try:
            verdict = await self.redis.get(verdict_key)
        except redis.exceptions.RedisError as exc:
            log.warning("render cache unreachable, decoding %s uncached: %r", verdict_key, exc)
            verdict = None
        if isinstance(verdict, bytes):
            return int(verdict)
        parsed, logo = await self._parsed(design)
        readable = await asyncio.to_thread(_readable, payload, parsed, size, logo)
        await self._set(key, verdict_key, str(readable).encode())
        return readable

    async def _parsed(self, design: dict[str, Any]) -> tuple[Design, bytes | None]:
        parsed = Design.model_validate(design)
        logo = await load_logo(self.db, parsed.logo.sha256) if parsed.logo and parsed.logo.sha256 else None
        return parsed, logo

    async def _get(self, image_key: str, verdict_key: str | None) -> tuple[bytes | None, bytes | None]:
        try:
            values = await self.redis.mget([image_key] if verdict_key is None else [image_key, verdict_key])
        except redis.exceptions.RedisError as exc:
            log.warning("render cache unreachable, rendering %s uncached: %r", image_key, exc)
            return None, None
        cached, verdict = values[0], values[1] if verdict_key is not None else None
        return cached if isinstance(cached, bytes) else None, verdict if isinstance(verdict, bytes) else None

    async def _set(self, key: str, cache_key: str, value: bytes) -> None:
        try:
            await self.redis.set(cache_key, value, ex=RENDER_TTL)
        except redis.exceptions.RedisError as exc:
            log.warning("could not cache render %s: %r", key, exc)
