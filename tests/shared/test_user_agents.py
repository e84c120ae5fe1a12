"""Device tags and browser families that routing rules see, and the languages a visitor prefers."""

from __future__ import annotations

import pytest

from shared.user_agents import AGENT_CACHE_ENTRIES, agent_traits
from shared.visitor import preferred_languages

AGENTS = {
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4 Mobile/15E148 Safari/604.1",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 "
            "Mobile/15E148 Safari/604.1",
    "pixel": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
             "Mobile Safari/537.36",
    "galaxy_tab": "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/124.0.0.0 Safari/537.36",
    "samsung": "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
               "SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "windows_edge": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "mac_firefox": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "ubuntu_firefox": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "windows_opera": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
    "ios_chrome": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                  "CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    "instagram": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Mobile/15E148 Instagram 327.0.0.0 (iPhone14,5; iOS 17_4; en_US)",
    "wechat": "Mozilla/5.0 (Linux; Android 13; V2148A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/107.0 "
              "Mobile Safari/537.36 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64",
}


@pytest.mark.parametrize(("agent", "devices", "browser"), [
    ("iphone", {"ios", "mobile"}, "safari"),
    ("ipad", {"ios", "tablet"}, "safari"),
    ("pixel", {"android", "mobile"}, "chrome"),
    ("galaxy_tab", {"android", "tablet"}, "chrome"),
    ("samsung", {"android", "mobile"}, "samsung"),
    ("windows_edge", {"windows", "desktop"}, "edge"),
    ("mac_firefox", {"macos", "desktop"}, "firefox"),
    ("ubuntu_firefox", {"linux", "desktop"}, "firefox"),
    ("windows_opera", {"windows", "desktop"}, "opera"),
    ("ios_chrome", {"ios", "mobile"}, "chrome"),
    ("instagram", {"ios", "mobile"}, "instagram"),  # the in-app browser, not the engine under it
    ("wechat", {"android", "mobile"}, "wechat"),
])
def test_devices_and_browser_of_common_agents(agent: str, devices: set[str], browser: str) -> None:
    traits = agent_traits(AGENTS[agent])
    assert (traits.devices, traits.browser) == (devices, browser)


def test_an_empty_or_unknown_agent_matches_no_device_or_browser() -> None:
    assert agent_traits("") == agent_traits("curl/8.5.0") == agent_traits("") and not agent_traits("").devices
    assert agent_traits("curl/8.5.0").browser is None


def test_parsed_agents_are_cached_in_a_bounded_lru() -> None:
    agent_traits(AGENTS["iphone"])
    hits = agent_traits.cache_info().hits
    agent_traits(AGENTS["iphone"])
    assert agent_traits.cache_info().hits == hits + 1
    assert agent_traits.cache_info().maxsize == AGENT_CACHE_ENTRIES


@pytest.mark.parametrize(("header", "languages"), [
    ("de-AT,de;q=0.9,en;q=0.4", {"de"}),
    ("en-US, fr-CA;q=0.5, *;q=0.8", {"en", "fr"}),
    ("pt-BR;q=0.49", set()),
    ("ZH-hant-TW", {"zh"}),
    ("", set()),
    ("de;q=x, ;q=1, en;foo=bar", {"en"}),
    ("i-klingon, x-pirate, tlhingan, dé, fil", {"fil"}),  # only what a rule can name: 2–3 ASCII letters
])
def test_preferred_languages_are_primary_tags_with_q_of_at_least_one_half(header: str, languages: set[str]) -> None:
    assert preferred_languages(header) == languages
