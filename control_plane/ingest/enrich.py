"""Turning a raw scan event into analytics columns: device, OS, browser, bot, scan method, scanner app.

The rules are tabled in docs/concepts.md ("Enrichment"); in-app browsers are recognised by the table the edge's
routing rules use too (`shared.user_agents`). User agents repeat heavily (a print run is
scanned by the same few phone models), so the parsed result is cached per user agent string.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from crawlerdetect import CrawlerDetect
from ua_parser import parse

from shared.user_agents import in_app_browser

# Link-preview fetchers that crawlerdetect does not know by name.
PREVIEW_TOKENS = ("WhatsApp/", "TelegramBot", "Discordbot", "SkypeUriPreview", "Iframely", "Embedly",
                  "redditbot", "Applebot", "vkShare", "Viber")
DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Chrome OS", "FreeBSD", "Debian"})
MOBILE_OS = frozenset({"iOS", "Android", "iPadOS", "HarmonyOS", "KaiOS", "Windows Phone", "BlackBerry OS"})
TABLET_DEVICES = frozenset({"iPad", "Generic Tablet", "Kindle"})
CAMERA_APPS = {"iOS": "iOS Camera", "iPadOS": "iOS Camera", "Android": "Android Camera"}

_crawlers = CrawlerDetect()


@dataclass(frozen=True, slots=True)
class Agent:
    """What a user agent string says about the device that sent it."""

    device_type: str  # mobile | tablet | desktop | bot | unknown
    os: str
    browser: str
    in_app: str | None  # the app whose in-app browser sent the request
    crawler: bool


@dataclass(frozen=True, slots=True)
class Enrichment:
    device_type: str
    os: str
    browser: str
    is_bot: bool
    scan_method: str  # camera | app_scanner | file_upload | manual_entry
    scanner_app: str | None


@lru_cache(maxsize=65_536)
def classify_agent(user_agent: str) -> Agent:
    if not user_agent.strip():
        return Agent("unknown", "Other", "Other", None, crawler=True)  # every phone browser sends one
    parsed = parse(user_agent)
    os_name = parsed.os.family if parsed.os else "Other"
    browser = parsed.user_agent.family if parsed.user_agent else "Other"
    device = parsed.device.family if parsed.device else ""
    crawler = (device == "Spider" or any(token in user_agent for token in PREVIEW_TOKENS)
               or _crawlers.isCrawler(user_agent))
    in_app = app[1] if (app := in_app_browser(user_agent)) else None
    return Agent(_device_type(user_agent, os_name, device, crawler), os_name, browser, in_app, crawler)


def _device_type(user_agent: str, os_name: str, device: str, crawler: bool) -> str:
    if crawler:
        return "bot"
    if device in TABLET_DEVICES or "Tablet" in user_agent or (os_name == "Android" and "Mobile" not in user_agent):
        return "tablet"
    if os_name in MOBILE_OS or "Mobile" in user_agent:
        return "mobile"
    if os_name in DESKTOP_OS:
        return "desktop"
    return "unknown"


@lru_cache(maxsize=65_536)
def enrich(user_agent: str, method: str, marker: bool) -> Enrichment:
    agent = classify_agent(user_agent)
    # HEAD requests come from link checkers and preview fetchers, never from a person scanning.
    bot = agent.crawler or method == "HEAD"
    scan_method, app = _scan_method(marker, agent)
    return Enrichment(agent.device_type, agent.os, agent.browser, bot, scan_method, app)


def _scan_method(marker: bool, agent: Agent) -> tuple[str, str | None]:
    """Printed images encode `short_url?qr=1`; a visit without the marker was typed, pasted or shared."""
    if not marker:
        return "manual_entry", None
    if agent.in_app:
        return "app_scanner", agent.in_app
    if agent.device_type == "desktop":
        return "file_upload", None  # desktops have no camera app: the code was decoded from an image
    return "camera", CAMERA_APPS.get(agent.os) if agent.device_type in ("mobile", "tablet") else None

