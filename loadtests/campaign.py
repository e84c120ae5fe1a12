"""A printed campaign for load tests: codes in groups, who scans what, and what each scan must return.

Knobs (environment variables, read by `Knobs.from_env`):

| variable | default | meaning |
|---|---|---|
| `LOAD_CODES` | 10000 | codes printed (minted through the API) |
| `LOAD_GROUPS` | 5 | groups (print runs) the codes are spread over |
| `LOAD_ZIPF` | 1.1 | Zipf exponent of code popularity (0 = uniform) |
| `LOAD_BOT_SHARE` | 0.05 | share of scans by crawlers and link-preview fetchers |
| `LOAD_HEAD_SHARE` | 0.03 | share of HEAD requests |
| `LOAD_QUERY_SHARE` | 0.3 | share of scans carrying visitor query parameters |
| `LOAD_ADMIN_WAIT` | 2.0 | seconds between an admin's actions (lower = more writes) |
| `LOAD_ADMINS` | 2 | admin threads; each owns a share of the groups |
| `LOAD_SCAN_WAIT` | 0.05 | longest pause of a scanner between scans, seconds (0: as fast as it can) |
| `LOAD_GRACE` | 0 | seconds a write may take to reach every edge before a scan must see it (0: read-your-writes) |
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.accounting import GroupState

MOBILE = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 MicroMessenger/8.0.49(0x18003137) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148 Instagram 330.0.3.27.90 (iPhone15,2; iOS 17_4; en_US; en; scale=3.00; 1179x2556)",
]
DESKTOP = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
]


@dataclass(frozen=True)
class Knobs:
    codes: int = 10_000
    groups: int = 5
    zipf: float = 1.1
    bot_share: float = 0.05
    head_share: float = 0.03
    query_share: float = 0.3
    admin_wait: float = 2.0
    admins: int = 2
    grace: float = 0.0
    scan_wait: float = 0.05

    @classmethod
    def from_env(cls) -> Knobs:
        env = os.environ
        return cls(int(env.get("LOAD_CODES", cls.codes)), int(env.get("LOAD_GROUPS", cls.groups)),
                   float(env.get("LOAD_ZIPF", cls.zipf)), float(env.get("LOAD_BOT_SHARE", cls.bot_share)),
                   float(env.get("LOAD_HEAD_SHARE", cls.head_share)),
                   float(env.get("LOAD_QUERY_SHARE", cls.query_share)),
                   float(env.get("LOAD_ADMIN_WAIT", cls.admin_wait)), int(env.get("LOAD_ADMINS", cls.admins)),
                   float(env.get("LOAD_GRACE", cls.grace)), float(env.get("LOAD_SCAN_WAIT", cls.scan_wait)))


@dataclass
class Campaign:
    """The seeded campaign (written by seed.py): its groups as seeded, its codes and who scans what."""

    api: str
    edge_host: str
    key: str
    groups: dict[str, tuple[int, GroupState]]  # group id → (version, state) as seeded
    codes: list[tuple[str, str, str]]  # (code id, slug, group id), most popular first
    knobs: Knobs
    _weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._weights = list(itertools.accumulate(1 / (rank ** self.knobs.zipf)
                                                  for rank in range(1, len(self.codes) + 1)))

    def pick_code(self, rng: random.Random) -> tuple[str, str, str]:
        position = rng.random() * self._weights[-1]
        return self.codes[min(bisect.bisect_left(self._weights, position), len(self.codes) - 1)]

    def save(self, path: Path) -> None:
        data = {"api": self.api, "edge_host": self.edge_host, "key": self.key, "knobs": self.knobs.__dict__,
                "groups": {g: [v, asdict(s)] for g, (v, s) in self.groups.items()}, "codes": self.codes}
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> Campaign:
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(data["api"], data["edge_host"], data["key"],
                   {g: (v, GroupState(**s)) for g, (v, s) in data["groups"].items()},
                   [tuple(c) for c in data["codes"]], Knobs(**data["knobs"]))  # type: ignore[misc]
