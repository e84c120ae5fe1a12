"""Generated scan traffic for the ingest benchmarks: many codes scanned by Zipf's law, over many hours, in
stream order, from a realistic mix of phones, in-app scanners and bots.

Stream order matters: a real scan stream is in time order, so a batch of 5,000 scans spans minutes to an
hour or two, whatever the total spread. Times here advance through the spread with a little jitter, which
gives each batch the rollup keys of a real one (many codes × dimension values × one or two hours); random
times over the whole spread would make every batch touch every hour, a worst case no stream produces.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from control_plane.services.keys import create_key, ensure_org
from shared.ids import new_id
from shared.scan_event import ScanEvent

IOS = ["17_4", "17_3", "16_6", "17_5", "15_8", "18_0"]
ANDROID = [("14", "SM-S918B"), ("13", "Pixel 7"), ("14", "SM-A546B"), ("12", "M2101K6G"), ("14", "Pixel 8"),
           ("13", "SM-G991B"), ("11", "moto g(30)"), ("14", "CPH2449")]
CHROME = ["124.0.0.0", "123.0.0.0", "122.0.6261.119", "125.0.6422.53"]
IN_APP = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    " MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    " Instagram 320.0.2.28.108 (iPhone15,2; iOS {ios}; en_US; en; scale=3.00; 1179x2556; 567040018)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
    " [FBAN/FBIOS;FBAV/462.0.0.38.101;FBBV/596392416;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/{ios}]",
]
DESKTOP = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{chrome}"
           " Safari/537.36",
           "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4"
           " Safari/605.1.15"]
BOTS = ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "WhatsApp/2.23.20.0", "curl/8.5.0"]
COUNTRIES = ["US", "DE", "FR", "GB", "JP", "AU", "ES", "IT", "NL", "BR", "CA", "IN", None]
COUNTRY_WEIGHTS = [30, 12, 10, 10, 6, 4, 4, 4, 3, 3, 3, 3, 8]


def user_agents() -> tuple[list[str], list[float]]:
    """About 190 distinct agents: phones dominate, a tail of in-app browsers, desktops and bots."""
    agents: list[str] = []
    weights: list[float] = []
    for ios in IOS:
        major = ios.split("_")[0]
        agents.append(f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
                      f" Gecko) Version/{major}.0 Mobile/15E148 Safari/604.1")
        weights.append(6.0)
        agents += [template.format(ios=ios) for template in IN_APP]
        weights += [0.3] * len(IN_APP)
    for (version, model), chrome in itertools.product(ANDROID, CHROME):
        agents.append(f"Mozilla/5.0 (Linux; Android {version}; {model}) AppleWebKit/537.36 (KHTML, like Gecko)"
                      f" Chrome/{chrome} Mobile Safari/537.36")
        weights.append(1.2)
        agents.append(f"Mozilla/5.0 (Linux; Android {version}; SAMSUNG {model}) AppleWebKit/537.36 (KHTML, like"
                      f" Gecko) SamsungBrowser/24.0 Chrome/{chrome} Mobile Safari/537.36")
        weights.append(0.3)
    for template, chrome in itertools.product(DESKTOP, CHROME):
        agents.append(template.format(chrome=chrome))
        weights.append(0.4)
    agents += BOTS
    weights += [0.8] * len(BOTS)
    # A long tail: app builds that differ only in their build number, each seen rarely.
    for build in range(100):
        agents.append(f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like"
                      f" Gecko) Mobile/15E148 Instagram 320.0.2.{build}.108")
        weights.append(0.02)
    return agents, weights


@dataclass(frozen=True, slots=True)
class Code:
    id: str
    org_id: str
    group_id: str | None


async def make_codes(conn: asyncpg.Connection[Any], count: int, orgs: int = 10, groups: int = 50) -> list[Code]:
    """`count` codes in `orgs` organisations; half of them in one of `groups` groups (print runs)."""
    org_ids = [await ensure_org(conn, f"bench-{secrets.token_hex(4)}") for _ in range(orgs)]
    group_ids = [new_id("grp") for _ in range(groups)]
    group_org = {g: org_ids[i % orgs] for i, g in enumerate(group_ids)}
    await conn.executemany("INSERT INTO qr_groups (id, org_id, livemode, name) VALUES ($1, $2, true, 'bench')",
                           [(g, group_org[g]) for g in group_ids])
    codes = []
    for n in range(count):
        group_id = group_ids[n % groups] if n % 2 else None
        org_id = group_org[group_id] if group_id else org_ids[n % orgs]
        codes.append(Code(new_id("qr"), org_id, group_id))
    await conn.executemany("INSERT INTO qr_codes (id, org_id, livemode, kind, type, slug, domain, group_id)"
                           " VALUES ($1, $2, true, 'dynamic', 'url', $3, 'bench.test', $4)",
                           [(c.id, c.org_id, secrets.token_hex(6), c.group_id) for c in codes])
    return codes


async def make_key(conn: asyncpg.Connection[Any], org_id: str) -> str:
    return (await create_key(conn, org_id, livemode=True, scopes=["qr:read"])).secret


def edge_hash(value: str) -> str:
    """Stands in for the edge's keyed hash: 32 hex digits."""
    return hashlib.md5(value.encode()).hexdigest()


def scan_events(codes: list[Code], count: int, *, hours: float, seed: int, zipf_s: float = 1.1,
                visitors: int = 80_000, end_ms: int | None = None) -> list[bytes]:
    """`count` encoded events over the `hours` before `end_ms` (default now), in time order."""
    rng = random.Random(seed)
    agents, agent_weights = user_agents()
    code_weights = [1 / (rank + 1) ** zipf_s for rank in range(len(codes))]
    picked_codes = rng.choices(codes, code_weights, k=count)
    picked_agents = rng.choices(agents, agent_weights, k=count)
    countries = rng.choices(COUNTRIES, COUNTRY_WEIGHTS, k=count)
    span_ms = int(hours * 3_600_000)
    end = end_ms if end_ms is not None else int(time.time() * 1000) - 60_000
    events = []
    for i in range(count):
        at = end - span_ms + span_ms * i // count + rng.randrange(-30_000, 30_000)
        code = picked_codes[i]
        visitor = rng.randrange(visitors)
        events.append(ScanEvent(
            str(uuid.uuid4()), min(at, end), code.id, code.group_id, code.org_id, True, "redirected", "GET",
            rng.random() < 0.9, edge_hash(f"ip{visitor // 2}"), edge_hash(f"v{visitor}"), picked_agents[i],
            "", "en-US,en;q=0.9", countries[i], {"table": str(i % 40)} if code.group_id else {}).encode())
    return events
