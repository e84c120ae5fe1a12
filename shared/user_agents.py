"""What a user agent says for routing rules: device tags and one browser family (docs/rules.md).

Parsed with ua-parser (the parser the ingest worker uses too) and cached per distinct user agent in a
bounded LRU: a print run is scanned by a few phone models, so almost every scan is a cache hit, and a
visitor sending random user agents costs one parse (~20 µs) and evicts only old entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

from ua_parser import parse

Device = Literal["ios", "android", "mobile", "tablet", "desktop", "windows", "macos", "linux"]
Browser = Literal["chrome", "safari", "firefox", "edge", "samsung", "opera", "wechat", "instagram", "facebook",
                  "line", "kakaotalk", "snapchat", "tiktok", "alipay", "pinterest", "google_lens"]
DEVICES: tuple[str, ...] = get_args(Device)
BROWSERS: tuple[str, ...] = get_args(Browser)
# In-app browsers, by the token their user agent carries: (token, the `browser` that routing rules match,
# the app as analytics name it in `scanner_app`). The one table for the edge's rules and the ingest worker's
# enrichment (docs/rules.md, docs/concepts.md). Order matters: Messenger webviews also say FBAN, Instagram's
# carry FBAV-like tokens. Checked before the engine's family because the app, not the engine, is what a
# campaign targets ("people who opened it from Instagram").
IN_APP_BROWSERS: tuple[tuple[str, str, str], ...] = (
    ("MicroMessenger/", "wechat", "WeChat"),
    ("Instagram", "instagram", "Instagram"),
    ("FBAN/", "facebook", "Facebook"),
    ("FBAV/", "facebook", "Facebook"),
    ("FB_IAB/", "facebook", "Facebook"),
    (" Line/", "line", "LINE"),
    ("KAKAOTALK", "kakaotalk", "KakaoTalk"),
    ("Snapchat", "snapchat", "Snapchat"),
    ("musical_ly", "tiktok", "TikTok"),
    ("BytedanceWebview", "tiktok", "TikTok"),
    ("AlipayClient", "alipay", "Alipay"),
    ("Pinterest", "pinterest", "Pinterest"),
    ("GSA/", "google_lens", "Google Lens"),  # the Google app, which hosts Lens on iOS
)
ENGINE_BROWSERS: tuple[tuple[str, str], ...] = (  # ua-parser family prefix → browser name
    ("Samsung Internet", "samsung"),
    ("Chrom", "chrome"),  # Chrome, Chrome Mobile, Chrome Mobile iOS, Chromium
    ("Mobile Safari", "safari"),
    ("Safari", "safari"),
    ("Firefox", "firefox"),
    ("Edge", "edge"),
    ("Opera", "opera"),
)

_OS_TAGS = {"iOS": "ios", "iPadOS": "ios", "Android": "android", "Windows": "windows", "Mac OS X": "macos",
            "Linux": "linux", "Ubuntu": "linux", "Fedora": "linux", "Debian": "linux"}
_DESKTOP_OS = frozenset({"windows", "macos", "linux"})
_TABLETS = frozenset({"iPad", "Generic Tablet", "Kindle"})
AGENT_CACHE_ENTRIES = 4096  # user agents are cut to 512 characters by the edge: at most ~2 MiB


@dataclass(frozen=True, slots=True)
class AgentTraits:
    devices: frozenset[str]  # e.g. {"ios", "mobile"}; empty when nothing is known
    browser: str | None  # one of BROWSERS, or None


@lru_cache(maxsize=AGENT_CACHE_ENTRIES)
def agent_traits(user_agent: str) -> AgentTraits:
    if not user_agent:
        return AgentTraits(frozenset(), None)
    parsed = parse(user_agent)
    os_tag = _OS_TAGS.get(parsed.os.family) if parsed.os else None
    device = parsed.device.family if parsed.device else ""
    devices = {os_tag} if os_tag else set()
    if form := _form_factor(user_agent, os_tag, device):
        devices.add(form)
    return AgentTraits(frozenset(devices), _browser(user_agent, parsed.user_agent.family if parsed.user_agent else ""))


def _form_factor(user_agent: str, os_tag: str | None, device: str) -> str | None:
    if device in _TABLETS or "Tablet" in user_agent or (os_tag == "android" and "Mobile" not in user_agent):
        return "tablet"
    if os_tag in ("ios", "android") or "Mobile" in user_agent:
        return "mobile"
    return "desktop" if os_tag in _DESKTOP_OS else None


def in_app_browser(user_agent: str) -> tuple[str, str] | None:
    """The in-app browser that sent `user_agent`, as (its `browser` for rules, the app's name), or None."""
    return next(((browser, app) for token, browser, app in IN_APP_BROWSERS if token in user_agent), None)


def _browser(user_agent: str, family: str) -> str | None:
    if in_app := in_app_browser(user_agent):
        return in_app[0]
    return next((name for prefix, name in ENGINE_BROWSERS if family.startswith(prefix)), None)
