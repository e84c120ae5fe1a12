"""Rules and split, compiled once per cached row and evaluated per scan (docs/rules.md, docs/api.md §3.5 steps 3–4).

Compiling turns the stored JSON (`shared.rules.dump_rules`) into closures over precompiled values —
networks, time zones, frozensets, timestamps — so a scan costs only the comparisons of the rules it
reaches, and a visitor fact (user agent, languages, query, address) is derived only if a rule asks.
"""

from __future__ import annotations

import hashlib
import ipaddress
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from shared.rows import Destination
from shared.visitor import Visitor

Check = Callable[[Visitor, float], bool]  # (visitor, unix time) → does this condition match
MINUTES_PER_DAY = 24 * 60
WEEKDAY_NUMBERS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class Choice(NamedTuple):
    rule: int | None  # index in the effective rule list (the code's own rules, then the group's)
    variant: int | None  # index in the split that applied
    destination: Destination


@dataclass(frozen=True, slots=True)
class CompiledRule:
    checks: tuple[Check, ...]
    destination: Destination

    def matches(self, visitor: Visitor, now: float) -> bool:
        for check in self.checks:
            if not check(visitor, now):
                return False
        return True


@dataclass(frozen=True, slots=True)
class CompiledSplit:
    salt: bytes  # the id of the code or group that owns the split: sticky across its codes, not across splits
    bounds: tuple[int, ...]  # cumulative weights
    destinations: tuple[Destination, ...]

    def pick(self, visitor_hash: str) -> int:
        digest = hashlib.blake2b(self.salt + visitor_hash.encode(), digest_size=8).digest()
        # 64 bits modulo a total ≤ 1,000: the bias is below 1e-16.
        return bisect_right(self.bounds, int.from_bytes(digest, "big") % self.bounds[-1])


@dataclass(frozen=True, slots=True)
class Routing:
    rules: tuple[CompiledRule, ...]
    split: CompiledSplit | None

    def choose(self, visitor: Visitor, now: float) -> Choice | None:
        """The first matching rule, else the split's variant; None means the code's usual destination."""
        for index, rule in enumerate(self.rules):
            for check in rule.checks:  # CompiledRule.matches, inlined: this loop is the per-scan cost
                if not check(visitor, now):
                    break
            else:
                return Choice(index, None, rule.destination)
        if self.split is not None:
            variant = self.split.pick(visitor.visitor_hash)
            return Choice(None, variant, self.split.destinations[variant])
        return None


def compile_routing(own_rules: Sequence[dict[str, Any]], own_split: Sequence[dict[str, Any]] | None,
                    owner_id: str, group_rules: Sequence[dict[str, Any]] = (),
                    group_split: Sequence[dict[str, Any]] | None = None, group_id: str | None = None,
                    inherits: bool = False) -> Routing | None:
    """The routing of a code: its own rules first, then — only when it inherits the group's destination —
    the group's; its own split, else (inheriting only) the group's. None when there is nothing to route."""
    rules = [compile_rule(rule) for rule in own_rules]
    split = compile_split(own_split, owner_id) if own_split else None
    if inherits and group_id is not None:
        rules += [compile_rule(rule) for rule in group_rules]
        if split is None and group_split:
            split = compile_split(group_split, group_id)
    return Routing(tuple(rules), split) if rules or split else None


def compile_split(variants: Sequence[dict[str, Any]], owner_id: str) -> CompiledSplit:
    bounds = tuple(accumulate(int(variant["weight"]) for variant in variants))
    return CompiledSplit(owner_id.encode() + b"\n", bounds, tuple(destination(v["destination"]) for v in variants))


def destination(raw: dict[str, Any]) -> Destination:
    return Destination(**raw)


def compile_rule(rule: dict[str, Any]) -> CompiledRule:
    conditions: dict[str, Any] = rule["if"]
    checks = [check for build in CONDITION_BUILDERS if (check := build(conditions)) is not None]
    return CompiledRule(tuple(checks), destination(rule["destination"]))


def _after(c: dict[str, Any]) -> Check | None:
    if "after" not in c:
        return None
    moment = datetime.fromisoformat(c["after"]).timestamp()
    return lambda visitor, now: now >= moment


def _before(c: dict[str, Any]) -> Check | None:
    if "before" not in c:
        return None
    moment = datetime.fromisoformat(c["before"]).timestamp()
    return lambda visitor, now: now < moment


def _country(c: dict[str, Any]) -> Check | None:
    if "country" not in c:
        return None
    countries = frozenset(c["country"])
    return lambda visitor, now: visitor.country in countries


def _query(c: dict[str, Any]) -> Check | None:
    if "query" not in c:
        return None
    wanted = tuple(c["query"].items())

    def check(visitor: Visitor, now: float) -> bool:
        query = visitor.query
        for key, value in wanted:
            values = query.get(key)
            if values is None or (value is not None and value not in values):
                return False
        return True
    return check


def _ip(c: dict[str, Any]) -> Check | None:
    if "ip" not in c:
        return None
    # (version, network bits, mask bits) as integers: two operations per network instead of ipaddress's `in`.
    networks = tuple((n.version, int(n.network_address), int(n.netmask))
                     for n in (ipaddress.ip_network(cidr, strict=False) for cidr in c["ip"]))

    def check(visitor: Visitor, now: float) -> bool:
        address = visitor.ip
        if address is None:
            return False
        version, bits = address.version, int(address)
        for network_version, network, mask in networks:
            if bits & mask == network and version == network_version:
                return True
        return False
    return check


def _language(c: dict[str, Any]) -> Check | None:
    if "language" not in c:
        return None
    languages = frozenset(c["language"])
    return lambda visitor, now: not languages.isdisjoint(visitor.languages)


def _device(c: dict[str, Any]) -> Check | None:
    if "device" not in c:
        return None
    devices = frozenset(c["device"])
    return lambda visitor, now: not devices.isdisjoint(visitor.agent.devices)


def _browser(c: dict[str, Any]) -> Check | None:
    if "browser" not in c:
        return None
    browsers = frozenset(c["browser"])
    return lambda visitor, now: visitor.agent.browser in browsers


def _clock_minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


_local_minutes: dict[tuple[ZoneInfo, int], tuple[int, int]] = {}


def local_minute(zone: ZoneInfo, now: float) -> tuple[int, int]:
    """(weekday, minute of the day) in `zone`, memoised per zone and UTC minute: every rule and every scan
    within the same minute shares one time zone conversion."""
    key = (zone, int(now // 60))
    found = _local_minutes.get(key)
    if found is None:
        if len(_local_minutes) >= 1024:
            _local_minutes.clear()
        local = datetime.fromtimestamp(key[1] * 60, zone)
        found = _local_minutes[key] = (local.weekday(), local.hour * 60 + local.minute)
    return found


def _calendar(c: dict[str, Any]) -> Check | None:
    """`weekday` and/or `time` in `timezone`. A window that crosses midnight belongs to the day it starts
    on: fri 22:00–02:00 matches Friday from 22:00 and Saturday until 02:00. Local wall-clock time, so a
    window keeps its local hours across a DST change."""
    if "weekday" not in c and "time" not in c:
        return None
    zone = ZoneInfo(c.get("timezone") or "UTC")
    days = frozenset(WEEKDAY_NUMBERS[day] for day in c["weekday"]) if "weekday" in c else None
    window = c.get("time")
    if window is None:
        weekdays = days or frozenset()
        return lambda visitor, now: local_minute(zone, now)[0] in weekdays
    start, end = _clock_minutes(window["from"]), _clock_minutes(window["to"])

    def check(visitor: Visitor, now: float) -> bool:
        weekday, minute = local_minute(zone, now)
        if start < end:
            started_on = weekday if start <= minute < end else None
        elif minute >= start:
            started_on = weekday
        elif minute < end:
            started_on = (weekday - 1) % 7  # the part after midnight belongs to yesterday's window
        else:
            started_on = None
        return started_on is not None and (days is None or started_on in days)
    return check


# Cheap checks first: every condition must match, so the order changes the cost, never the answer.
CONDITION_BUILDERS: tuple[Callable[[dict[str, Any]], Check | None], ...] = (
    _after, _before, _country, _query, _ip, _language, _calendar, _device, _browser,
)
