"""Rules and split, compiled once per cached row and evaluated per scan (docs/rules.md, docs/api.md §3.5 steps 3–4).

Compiling turns the stored JSON (`shared.rules.dump_rules`) into precompiled values — networks as integers,
time zones, frozensets, timestamps — so a scan costs only the comparisons of the rules it reaches, and a
visitor fact (user agent, languages, query, address) is derived only if a rule asks. Conditions on facts
many visitors share are closures, evaluated once per distinct facts (`Routing.memo`); `ip` and `query`,
tested on every scan, are data tested by `Routing.index` — the networks of all the rules in the running first,
once each, so that a visitor outside them skips every rule on the address at once.
"""

from __future__ import annotations

import hashlib
import ipaddress
from bisect import bisect_right
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from shared.rows import Destination
from shared.user_agents import agent_traits
from shared.visitor import Address, Facts, Visitor, address_bits, parsed_query, preferred_languages

Check = Callable[[Visitor, float], bool]  # (visitor, unix time) → does this condition match
MINUTES_PER_DAY = 24 * 60
WEEKDAY_NUMBERS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_from_bytes = int.from_bytes  # a global: `int.from_bytes` makes a bound method per call


class Choice(NamedTuple):
    rule: int | None  # index in the effective rule list (the code's own rules, then the group's)
    variant: int | None  # index in the split that applied
    destination: Destination


Networks = tuple[tuple[int, int, int], ...]  # (IP version, network bits, mask bits) per CIDR block
Wanted = tuple[tuple[str, str | None], ...]  # (query key, the value it must have, or None for any)


class Unique(NamedTuple):
    """A rule that can be in the running, and its conditions on `ip` and `query` (nearly unique per visitor) as
    data, which `Routing.index` tests on every scan. One per rule, shared by every memo entry."""
    rule: int  # index in the effective rule list
    networks: Networks | None  # the `ip` condition, or None
    wanted: Wanted | None  # the `query` condition, or None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    shared: Check | None  # its conditions on facts many visitors share (agent, languages, country, clock), as one call
    networks: Networks | None  # its `ip` condition
    wanted: Wanted | None  # its `query` condition
    destination: Destination


def _every(checks: Sequence[Check]) -> Check:
    """One callable for a rule's conditions: a rule usually has one or two, and each call saved per rule is
    most of what 20 rules cost."""
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda visitor, now: first(visitor, now) and second(visitor, now)

    def every(visitor: Visitor, now: float) -> bool:
        for check in checks:
            if not check(visitor, now):
                return False
        return True
    return every


@dataclass(frozen=True, slots=True)
class CompiledSplit:
    salt: bytes  # the id of the code or group that owns the split: sticky across its codes, not across splits
    bounds: tuple[int, ...]  # cumulative weights
    destinations: tuple[Destination, ...]
    # BLAKE2b-64 having hashed the salt: a copy of it finishes salt + visitor hash, the same digest as hashing
    # both at once, for two fifths less per scan than a new state (no keyword arguments to parse).
    salted: Any = field(init=False, compare=False, repr=False)
    total: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "salted", hashlib.blake2b(self.salt, digest_size=8))
        object.__setattr__(self, "total", self.bounds[-1])

    def pick(self, visitor_hash: str) -> int:
        state = self.salted.copy()
        state.update(visitor_hash.encode())
        # 64 bits modulo a total ≤ 1,000: the bias is below 1e-16.
        return bisect_right(self.bounds, _from_bytes(state.digest(), "big") % self.total)


NO_RULE = -1
MEMO_ENTRIES = 4096  # per compiled routing: answers for this many distinct sets of facts
PROJECTIONS = 64  # per compiled routing and fact: visitors' distinct device or language sets, the named in each
PROJECTED_SET = 4  # members at most of a visitor's set remembered there: a larger one (a bot's) is projected anew
Candidates = tuple[Unique, ...]  # rules left in the running, in order


# What a scan's shared facts leave in the running (a `Routing.memo` value), as a plain tuple (a scan unpacks it):
# the rules, and those of them without an `ip` condition — all that an address outside every network of the
# routing can match — or None when none of them tests the address. Each entry's size grows with the rules it
# keeps, never with their networks.
Running = tuple[Candidates, Candidates | None]


@dataclass(frozen=True, slots=True)
class Routing:
    rules: tuple[CompiledRule, ...]
    split: CompiledSplit | None
    # Every fact the rules read of a scan but the address and the query, as one hashable value.
    facts: Callable[[Facts, float], Hashable]
    memo: dict[Hashable, Running] = field(default_factory=dict)  # facts → the rules they leave in the running
    # Every answer `choose` can give, made once: a scan builds no Choice.
    rule_choices: tuple[Choice, ...] = field(init=False)
    variant_choices: tuple[Choice, ...] = field(init=False)
    uniques: tuple[Unique, ...] = field(init=False)  # per rule
    networks: Networks = field(init=False)  # every network the rules' `ip` conditions name, once each

    def __post_init__(self) -> None:
        object.__setattr__(self, "uniques", tuple(
            Unique(n, rule.networks, rule.wanted) for n, rule in enumerate(self.rules)))
        object.__setattr__(self, "networks", tuple(dict.fromkeys(
            network for rule in self.rules for network in rule.networks or ())))
        object.__setattr__(self, "rule_choices", tuple(
            Choice(n, None, rule.destination) for n, rule in enumerate(self.rules)))
        object.__setattr__(self, "variant_choices", tuple(
            Choice(None, n, destination) for n, destination in enumerate(self.split.destinations))
            if self.split is not None else ())

    def choose(self, visitor: Visitor, now: float) -> Choice | None:
        """The first matching rule, else the split's variant; None means the code's usual destination."""
        index = self.index(visitor.facts, visitor.query_string, visitor.client_ip, now)
        if index == NO_RULE:
            return None
        return self.rule_choices[index] if index < len(self.rules) else self.variant_choices[index - len(self.rules)]

    def index(self, facts: Facts, query: bytes, ip: str, now: float) -> int:
        """`choose`'s answer as a number, for the scan's facts, query and address: the rule's index, else the
        number of rules plus the variant's, else NO_RULE (-1: the usual destination). A scan plan keeps its
        decisions in that order, the usual last.

        Which rules can still match is a function of the facts many visitors share (docs/rules.md), so it is
        remembered per distinct facts: phones of the same model and language in the same minute cost one
        dictionary lookup, plus the `ip`/`query` conditions of the rules left in the running — the address and
        the query, nearly unique per visitor, are tested every time and never kept. A `Visitor` is built only
        for facts not seen before, for the rules' other conditions."""
        if self.rules:
            shared = self.facts(facts, now)
            running = self.memo.get(shared)
            if running is None:
                running = self._running(Visitor.of(facts, query, ip), now)
                if len(self.memo) >= MEMO_ENTRIES:
                    self.memo.clear()
                self.memo[shared] = running
            candidates, unaddressed = running
            address = None
            if unaddressed is not None:  # the address is read only if a rule in the running tests it
                address = address_bits(ip)
                # Most visitors are outside every network the rules name: one pass over those networks leaves
                # the rules that do not test the address, instead of a pass per rule.
                if not _within(address, self.networks):
                    candidates = unaddressed
            for rule, named, wanted in candidates:
                if named is not None and not _within(address, named):
                    continue
                if wanted is not None and not _has(parsed_query(query), wanted):
                    continue
                return rule
        if self.split is not None:
            return len(self.rules) + self.split.pick(facts[3])
        return NO_RULE

    def _running(self, visitor: Visitor, now: float) -> Running:
        """The rules whose shared conditions match, up to the first that has nothing else to test."""
        found: list[Unique] = []
        for rule, unique in zip(self.rules, self.uniques, strict=True):
            if rule.shared is None or rule.shared(visitor, now):
                found.append(unique)
                if rule.networks is None and rule.wanted is None:
                    break
        if all(rule.networks is None for rule in found):
            return tuple(found), None
        return tuple(found), tuple(rule for rule in found if rule.networks is None)


def compile_routing(own_rules: Sequence[dict[str, Any]], own_split: Sequence[dict[str, Any]] | None,
                    owner_id: str, group_rules: Sequence[dict[str, Any]] = (),
                    group_split: Sequence[dict[str, Any]] | None = None, group_id: str | None = None,
                    inherits: bool = False) -> Routing | None:
    """The routing of a code: its own rules first, then — only when it inherits the group's destination —
    the group's; its own split, else (inheriting only) the group's. None when there is nothing to route."""
    raw = list(own_rules)
    split = compile_split(own_split, owner_id) if own_split else None
    if inherits and group_id is not None:
        raw += group_rules
        if split is None and group_split:
            split = compile_split(group_split, group_id)
    if not raw and split is None:
        return None
    return Routing(tuple(compile_rule(rule) for rule in raw), split, facts_of([rule["if"] for rule in raw]))


def facts_of(conditions: Sequence[dict[str, Any]]) -> Callable[[Facts, float], Hashable]:
    """A function giving what these conditions can tell apart of a scan, but the address and the query: the
    visitor's devices, browser, languages and country as far as the conditions name them (an unnamed browser
    is None, a set keeps only the named members), the UTC minute if a weekday or time window is tested
    (windows are whole minutes), and between which `after`/`before` instants the scan falls. Two scans with
    equal facts leave the same rules in the running; a memo keyed by them holds only what the rules name —
    never a visitor's own text — and thousands of user agents of one phone model share one entry."""
    def named(name: str) -> frozenset[str]:
        return frozenset(value for c in conditions for value in c.get(name, ()))
    devices, browsers, languages, countries = named("device"), named("browser"), named("language"), named("country")
    agent = bool(devices or browsers)
    calendar = any("weekday" in c or "time" in c for c in conditions)
    instants = sorted({datetime.fromisoformat(c[name]).timestamp() for c in conditions
                       for name in ("after", "before") if name in c})
    if not (agent or languages or countries or calendar or instants):
        return lambda scan, now: None
    named_devices, named_languages = _Only(devices), _Only(languages)

    def facts(scan: Facts, now: float) -> Hashable:
        # One call per scan, reading only what the conditions name (a routing's memo holds one shape of facts).
        user_agent, accept_language, country, _, _ = scan
        traits = agent_traits(user_agent) if agent else None  # a cache lookup: not its parse again
        shared = (named_devices[traits.devices] if traits is not None and devices else None,
                  traits.browser if traits is not None and traits.browser in browsers else None,
                  named_languages[preferred_languages(accept_language)] if languages else None,
                  country if country in countries else None)
        if instants:
            return shared, now // 60 if calendar else 0, bisect_right(instants, now)
        return (shared, now // 60) if calendar else shared
    return facts


class _Only(dict[frozenset[str], frozenset[str]]):
    """A visitor's devices or languages among those a routing names, remembered per set: the sets come from
    bounded caches (`agent_traits`, `preferred_languages`), so a scan finds its answer by the set's remembered
    hash, builds no set, and its memo key compares member by member only with keys made of these same objects.
    Only small sets are remembered (a phone's languages are one to three): a bot's list of invented tags is
    projected on every scan, and no routing keeps it."""

    def __init__(self, named: frozenset[str]) -> None:
        super().__init__()
        self.named = named

    def __missing__(self, values: frozenset[str]) -> frozenset[str]:
        if len(values) > PROJECTED_SET:
            return values & self.named
        if len(self) >= PROJECTIONS:
            self.clear()
        only = self[values] = values & self.named
        return only


def compile_split(variants: Sequence[dict[str, Any]], owner_id: str) -> CompiledSplit:
    bounds = tuple(accumulate(int(variant["weight"]) for variant in variants))
    return CompiledSplit(owner_id.encode() + b"\n", bounds, tuple(destination(v["destination"]) for v in variants))


def destination(raw: dict[str, Any]) -> Destination:
    return Destination(**raw)


def compile_rule(rule: dict[str, Any]) -> CompiledRule:
    conditions: dict[str, Any] = rule["if"]
    shared = [check for build in SHARED_CONDITIONS if (check := build(conditions)) is not None]
    return CompiledRule(_every(shared) if shared else None, _networks(conditions), _wanted(conditions),
                        destination(rule["destination"]))


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


def _wanted(c: dict[str, Any]) -> Wanted | None:
    return tuple(c["query"].items()) if "query" in c else None


def _has(query: dict[str, list[str]], wanted: Wanted) -> bool:
    """The `query` condition: every key present, with the value asked for where one is."""
    for key, value in wanted:
        values = query.get(key)
        if values is None or (value is not None and value not in values):
            return False
    return True


def _within(address: Address | None, networks: Networks) -> bool:
    """The `ip` condition: the address is in one of the networks (never, without an address)."""
    if address is None:
        return False
    version, bits = address
    for network_version, network, mask in networks:
        if bits & mask == network and version == network_version:
            return True
    return False


def _networks(c: dict[str, Any]) -> Networks | None:
    if "ip" not in c:
        return None
    # Integers: two operations per network instead of ipaddress's `in`.
    return tuple((n.version, int(n.network_address), int(n.netmask))
                 for n in (ipaddress.ip_network(cidr, strict=False) for cidr in c["ip"]))


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
SHARED_CONDITIONS: tuple[Callable[[dict[str, Any]], Check | None], ...] = (
    _after, _before, _country, _language, _device, _browser, _calendar,
)
