"""Rendering costs: cold renders per format, the scannability check, and a cached public-image hit.

Run with `make bench-render` (wrapped in `flock /tmp/scanroute-bench.lock`). Uses DATABASE_URL/REDIS_URL
when given, else starts private servers. Budgets: SVG 512 px < 10 ms, PNG 512 px < 30 ms, judged on p95
(the verdict says OVER when the median or the p95 misses). Every measurement starts with WARMUP discarded
rounds; the reference in the same run is segno's own SVG and PNG writers for the same payload.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import segno
from PIL import Image, ImageDraw

from control_plane.api.app import create_app
from control_plane.cli.migrate import migrate_url
from control_plane.render import matrix
from control_plane.render.design import parse_design
from control_plane.render.output import render_bytes
from control_plane.render.scannability import check_scannable
from control_plane.services.keys import create_key, ensure_org
from shared.embedded import EmbeddedServices, temporary_root
from shared.settings import ControlPlaneSettings

PAYLOAD = "https://qr.example.com/abc1234?qr=1"
DESIGNS: dict[str, dict[str, Any]] = {
    "default": {}, "dots": {"style_preset": "dots"}, "sunset (gradient, 3 colours)": {"style_preset": "sunset"},
    "logo 0.3": {"logo": {"url": "https://logos.example/mark.png", "scale": 0.3}},
}
BUDGETS = {"svg": 10.0, "png": 30.0}
ROUNDS = 60
WARMUP = 5


def _logo() -> bytes:
    image = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((0, 0, 199, 199), fill=(20, 90, 200, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def measure(work: Callable[[], object], rounds: int = ROUNDS) -> tuple[float, float]:
    """Median and p95 in milliseconds."""
    samples = []
    for _ in range(WARMUP):
        work()
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


async def measure_async(work: Callable[[], Awaitable[object]], rounds: int = ROUNDS) -> tuple[float, float]:
    samples = []
    for _ in range(WARMUP):
        await work()
    for _ in range(rounds):
        start = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def row(label: str, median: float, p95: float, budget: float | None = None) -> None:
    verdict = "" if budget is None else ("  ok" if max(median, p95) < budget else f"  OVER {budget:g} ms")
    print(f"{label:<62} {median:8.2f} {p95:8.2f}{verdict}")


def renders() -> None:
    logo = _logo()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"this process may run on CPUs {sorted(os.sched_getaffinity(0))}; {WARMUP} warm-up rounds per row")
    print(f"{'reference: segno alone, 512 px, payload already encoded':<62} {'median':>8} {'p95':>8}  ms")
    qr = segno.make(PAYLOAD, error="m")
    row("  segno SVG writer", *measure(lambda: qr.save(io.BytesIO(), kind="svg", scale=512 // 37)))
    row("  segno PNG writer", *measure(lambda: qr.save(io.BytesIO(), kind="png", scale=512 // 37)))
    print(f"{'render, 512 px':<62} {'median':>8} {'p95':>8}  ms")
    for name, raw in DESIGNS.items():
        design = parse_design(raw)
        for format in ("svg", "png", "webp"):
            def cold(design: Any = design, format: str = format) -> bytes:
                matrix.qr_matrix.cache_clear()  # a payload never seen: segno encodes it every time
                return render_bytes(PAYLOAD, design, format, 512, logo if design.logo else None)

            def warm(design: Any = design, format: str = format) -> bytes:
                # The usual case: the design check on create/PATCH already encoded this payload.
                return render_bytes(PAYLOAD, design, format, 512, logo if design.logo else None)
            row(f"  {name}: {format}, new payload", *measure(cold), BUDGETS.get(format))
            row(f"  {name}: {format}, payload already encoded", *measure(warm), BUDGETS.get(format))
    def segno_alone() -> object:
        matrix.qr_matrix.cache_clear()
        return matrix.qr_matrix(PAYLOAD, "M")
    row("  segno alone (matrix for a new payload)", *measure(segno_alone))
    design = parse_design({})
    row("  default: png, 2048 px", *measure(lambda: render_bytes(PAYLOAD, design, "png", 2048), 15))
    print("scannability check (contrast + render + zxing-cpp decode)")
    for name, raw in DESIGNS.items():
        design = parse_design(raw)
        def check(d: Any = design) -> None:
            check_scannable(PAYLOAD, d, logo if d.logo else None)
        row(f"  {name}", *measure(check, 20))
    big = parse_design({"size": 2048})
    row("  default at size 2048 (checked at 1024)", *measure(lambda: check_scannable(PAYLOAD, big), 10))


async def cached_hits(settings: ControlPlaneSettings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cp") as client:
            conn = await app.state.control_plane.db.acquire()
            try:
                org = await ensure_org(conn, f"bench-{os.getpid()}")
                key = (await create_key(conn, org, livemode=True, scopes=["qr:read", "qr:write"])).secret
            finally:
                await app.state.control_plane.db.release(conn)
            headers = {"Authorization": f"Bearer {key}"}
            created = await client.post("/v1/qr-codes", headers=headers, json={
                "destination": {"type": "url", "url": "https://example.com/menu"}, "design": {"style_preset": "dots"}})
            url = created.json()["image_url"]
            first = time.perf_counter()
            assert (await client.get(url)).status_code == 200
            print("public image route, in-process ASGI (PostgreSQL spec lookup + Redis bytes)")
            row("  first request (renders, fills the cache)", (time.perf_counter() - first) * 1000, 0.0)
            row("  cached hit: GET /i/{hash}.png", *await measure_async(lambda: client.get(url), 200))
            row("  cached hit with If-None-Match → 304", *await measure_async(
                lambda: client.get(url, headers={"If-None-Match": f'"{url[3:35]}-png"'}), 200))


async def main_async(database_url: str, redis_url: str) -> None:
    await migrate_url(database_url)
    settings = ControlPlaneSettings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                                              "REDIS_NAMESPACE": f"bench{os.getpid()}",
                                              "SCAN_HASH_SECRET": "bench-secret-0123456789"})
    await cached_hits(settings)


def main() -> None:
    renders()
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        asyncio.run(main_async(os.environ["DATABASE_URL"], os.environ["REDIS_URL"]))
        return
    root = temporary_root("scanroute-bench-")
    try:
        with EmbeddedServices(root, persistent=False) as services:
            asyncio.run(main_async(services.database_url, services.redis_url))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
