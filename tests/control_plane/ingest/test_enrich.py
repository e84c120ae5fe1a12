from __future__ import annotations

import pytest

from control_plane.ingest.enrich import Enrichment, classify_agent, enrich

IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
                 " Version/17.4 Mobile/15E148 Safari/604.1")
ANDROID_CHROME = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko)"
                  " Chrome/124.0.0.0 Mobile Safari/537.36")
IPAD_SAFARI = ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
               " Version/16.6 Mobile/15E148 Safari/604.1")
ANDROID_TABLET = ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko)"
                  " Chrome/123.0.0.0 Safari/537.36")
WINDOWS_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
                  " Chrome/124.0.0.0 Safari/537.36")
MAC_SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
              " Version/17.4 Safari/605.1.15")
WINDOWS_EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
                " Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51")
LINUX_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
ANDROID_FIREFOX = "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"
SAMSUNG_INTERNET = ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko)"
                    " SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36")
IOS_CHROME = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
              " CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1")

# (user agent, device type, OS, browser)
BROWSERS = [
    (IPHONE_SAFARI, "mobile", "iOS", "Mobile Safari"),
    (ANDROID_CHROME, "mobile", "Android", "Chrome Mobile"),
    (IPAD_SAFARI, "tablet", "iOS", "Mobile Safari"),
    (ANDROID_TABLET, "tablet", "Android", "Chrome"),
    (WINDOWS_CHROME, "desktop", "Windows", "Chrome"),
    (MAC_SAFARI, "desktop", "Mac OS X", "Safari"),
    (WINDOWS_EDGE, "desktop", "Windows", "Edge"),
    (LINUX_FIREFOX, "desktop", "Linux", "Firefox"),
    (ANDROID_FIREFOX, "mobile", "Android", "Firefox Mobile"),
    (SAMSUNG_INTERNET, "mobile", "Android", "Samsung Internet"),
    (IOS_CHROME, "mobile", "iOS", "Chrome Mobile iOS"),
]

# (user agent, the app whose in-app browser/scanner opened the link)
IN_APP = [
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
     " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN", "WeChat"),
    ("Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Version/4.0 Chrome/118.0.0.0 Mobile Safari/537.36 MMWEBID/1234 MicroMessenger/8.0.42.2460(0x28002A35)"
     " WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64", "WeChat"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
     " Instagram 320.0.2.28.108 (iPhone15,2; iOS 17_3; en_US; en; scale=3.00; 1179x2556; 567040018)", "Instagram"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
     " [FBAN/FBIOS;FBAV/447.0.0.39.109;FBBV/541484584;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.2;FBSS/3;"
     "FBID/phone;FBLC/en_US;FBOP/5;FBRV/543318017]", "Facebook"),
    ("Mozilla/5.0 (Linux; Android 14; SM-G991B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Version/4.0 Chrome/120.0.6099.193 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/445.0.0.34.118;]", "Facebook"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
     " Safari Line/13.19.0", "LINE"),
    ("Mozilla/5.0 (Linux; Android 12; SM-A525F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko)"
     " Version/4.0 Chrome/119.0.6045.193 Mobile Safari/537.36 KAKAOTALK 10.4.3", "KakaoTalk"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
     " GSA/310.0.621847378 Mobile/15E148 Safari/604.1", "Google Lens"),
]

GOOGLEBOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CRAWLERS = [
    GOOGLEBOT_UA,
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.6367.118 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "DuckDuckBot/1.1; (+http://duckduckgo.com/duckduckbot.html)",
    "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.23.20.0 A",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Wget/1.21.4",
    "Go-http-client/1.1",
    "",
]


def enriched_as(user_agent: str, *, marker: bool = True, method: str = "GET") -> Enrichment:
    return enrich(user_agent, method, marker)


@pytest.mark.parametrize(("user_agent", "device", "os", "browser"), BROWSERS)
def test_browsers_are_people_with_their_device_os_and_browser(user_agent: str, device: str, os: str,
                                                             browser: str) -> None:
    enriched = enriched_as(user_agent)
    assert (enriched.is_bot, enriched.device_type, enriched.os, enriched.browser) == (False, device, os, browser)


@pytest.mark.parametrize("user_agent", CRAWLERS)
def test_every_crawler_and_preview_fetcher_is_a_bot(user_agent: str) -> None:
    assert enriched_as(user_agent).is_bot
    assert classify_agent(user_agent).device_type in ("bot", "unknown")


@pytest.mark.parametrize(("user_agent", "app"), IN_APP)
def test_in_app_scanners_are_app_scanner_with_the_app_named(user_agent: str, app: str) -> None:
    enriched = enriched_as(user_agent)
    assert (enriched.is_bot, enriched.scan_method, enriched.scanner_app) == (False, "app_scanner", app)
    assert enriched.device_type == "mobile"


def test_the_marker_decides_between_camera_and_manual_entry() -> None:
    assert (enriched_as(IPHONE_SAFARI).scan_method, enriched_as(IPHONE_SAFARI).scanner_app) == (
        "camera", "iOS Camera")
    assert enriched_as(ANDROID_CHROME).scanner_app == "Android Camera"
    typed = enriched_as(IPHONE_SAFARI, marker=False)
    assert (typed.scan_method, typed.scanner_app) == ("manual_entry", None)
    in_app_without_marker = enriched_as(IN_APP[0][0], marker=False)
    assert in_app_without_marker.scan_method == "manual_entry"


def test_a_desktop_with_the_marker_decoded_an_image() -> None:
    enriched = enriched_as(WINDOWS_CHROME)
    assert (enriched.scan_method, enriched.scanner_app) == ("file_upload", None)


def test_head_requests_are_bots_even_from_a_browser() -> None:
    assert enriched_as(IPHONE_SAFARI, method="HEAD").is_bot
    assert not enriched_as(IPHONE_SAFARI).is_bot
