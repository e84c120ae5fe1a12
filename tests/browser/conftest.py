"""Real browser tests (`make test-browser`): Playwright drives Debian's Chromium against real processes.

Playwright is imported inside the fixtures, so that the plain `make test` (which deselects the `browser`
marker) collects this folder without needing it installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from shared.processes import spawn, stop
from tests.conftest import ROOT
from tests.ports import free_port
from tests.test_e2e import wait_healthy

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
PASSWORD = "correct horse battery"


@dataclass
class Stack:
    env: dict[str, str]
    control_plane: str
    edge: str
    processes: dict[str, subprocess.Popen[bytes]]

    def scanroute(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "control_plane.cli", *args], input=stdin, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done

    def user(self, email: str, role: str = "owner", org: str = "acme") -> dict[str, Any]:
        made = self.scanroute("users", "create", "--org", org, "--email", email, "--role", role,
                              "--password-stdin", "--json", stdin=PASSWORD + "\n")
        created: dict[str, Any] = json.loads(made.stdout)
        return created

    def api_key(self, org: str = "acme") -> str:
        made = self.scanroute("keys", "create", "--org", org, "--json")
        key: str = json.loads(made.stdout)["key"]
        return key


@pytest.fixture
def stack(env: dict[str, str]) -> Iterator[Stack]:
    """Control plane, edge and ingest worker as real processes on one test's database and Redis namespace."""
    cp_port, edge_port = free_port(), free_port()
    full_env = {**os.environ, **env, "CONTROL_PLANE_BIND": f"127.0.0.1:{cp_port}",
                "EDGE_BIND": f"127.0.0.1:{edge_port}", "DEFAULT_DOMAIN": f"127.0.0.1:{edge_port}",
                "PUBLIC_SCHEME": "http",
                "CONTROL_PLANE_PUBLIC_URL": f"http://127.0.0.1:{cp_port}", "INGEST_BLOCK_MS": "50",
                "CACHE_SYNC_INTERVAL": "0.2"}
    processes = {kind: spawn([sys.executable, "-m", "control_plane.cli", kind], env=full_env)
                 for kind in ("control-plane", "edge", "ingest")}
    try:
        wait_healthy(f"http://127.0.0.1:{cp_port}/healthz", processes["control-plane"])
        wait_healthy(f"http://127.0.0.1:{edge_port}/healthz", processes["edge"])
        yield Stack(full_env, f"http://127.0.0.1:{cp_port}", f"http://127.0.0.1:{edge_port}", processes)
    finally:
        for process in processes.values():
            stop(process, signal.SIGTERM)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            await browser.close()


ContextFactory = Callable[..., Any]


@pytest.fixture
async def new_context(chromium: Browser, stack: Stack) -> AsyncIterator[ContextFactory]:
    """Separate browser profiles (cookies) on the stack's control plane; every request to another host fails
    the test, since the dashboard must not need any third-party host."""
    contexts: list[BrowserContext] = []
    foreign: list[str] = []

    async def make(width: str = "desktop") -> BrowserContext:
        context = await chromium.new_context(base_url=stack.control_plane, viewport=WIDTHS[width])  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        context.on("request", lambda request: None if request.url.startswith(
            (stack.control_plane, stack.edge, "data:", "blob:")) else foreign.append(request.url))
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        await context.close()
    assert not foreign, f"the dashboard requested other hosts: {foreign}"


def expect(target: Any) -> Any:
    """Playwright's retrying assertions, imported when a browser test runs (not when `make test` collects)."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(target)


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/app/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/app/**")


async def screenshots(page: Page, name: str) -> list[Path]:
    """The page at desktop and phone width, saved for CI's artefacts and for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for width, viewport in WIDTHS.items():
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        path = SCREENSHOTS / f"{name}-{width}.png"
        await page.screenshot(path=str(path), full_page=True)
        saved.append(path)
    await page.set_viewport_size(WIDTHS["desktop"])  # type: ignore[arg-type]
    return saved
