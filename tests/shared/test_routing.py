"""Rules and split as the edge evaluates them: each condition matching and not, order, inheritance,
calendar windows across midnight and DST with a frozen clock, split weights and stickiness."""

from __future__ import annotations

import gc
import hashlib
import itertools
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from shared.routing import Choice, Routing, compile_routing
from shared.rows import Destination
from shared.rules import Rules, Split, dump_rules, dump_split
from shared.visitor import Visitor, address_bits, preferred_languages

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.4 Mobile/15E148 Safari/604.1")
WINDOWS_EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0")
NOON = datetime(2026, 6, 3, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday


def url(name: str) -> dict[str, str]:
    return {"type": "url", "url": f"https://example.com/{name}"}


def stored_rules(*rules: tuple[dict[str, Any], str]) -> list[dict[str, Any]]:
    """Rules as the API stores them: validated, then dumped."""
    return dump_rules(TypeAdapter(Rules).validate_python([{"if": c, "destination": url(n)} for c, n in rules]))


def stored_split(*weights: int) -> list[dict[str, Any]]:
    return dump_split(TypeAdapter(Split).validate_python(
        [{"weight": w, "destination": url(f"v{i}")} for i, w in enumerate(weights)]))


def routing(*rules: tuple[dict[str, Any], str]) -> Routing:
    compiled = compile_routing(stored_rules(*rules), None, "qr_1")
    assert compiled is not None
    return compiled


def routed(conditions: dict[str, Any], visitor: Visitor, now: float = NOON) -> bool:
    choice = routing((conditions, "hit")).choose(visitor, now)
    return choice is not None and choice.destination.url == "https://example.com/hit"


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(("conditions", "matching", "other"), [
    ({"device": ["ios"]}, Visitor(user_agent=IPHONE), Visitor(user_agent=WINDOWS_EDGE)),
    ({"device": ["mobile"]}, Visitor(user_agent=IPHONE), Visitor(user_agent=WINDOWS_EDGE)),
    ({"device": ["desktop", "android"]}, Visitor(user_agent=WINDOWS_EDGE), Visitor(user_agent=IPHONE)),
    ({"browser": ["edge"]}, Visitor(user_agent=WINDOWS_EDGE), Visitor(user_agent=IPHONE)),
    ({"browser": ["safari"]}, Visitor(user_agent=IPHONE), Visitor(user_agent="")),
    ({"language": ["de"]}, Visitor(accept_language="de-AT,de;q=0.9,en;q=0.4"),
     Visitor(accept_language="en-US,de;q=0.4")),
    ({"country": ["DE", "AT"]}, Visitor(country="AT"), Visitor(country="CH")),
    ({"country": ["DE"]}, Visitor(country="DE"), Visitor(country=None)),
    ({"query": {"src": "flyer"}}, Visitor(query_string=b"a=1&src=poster&src=flyer"),
     Visitor(query_string=b"src=poster")),
    ({"query": {"src": None}}, Visitor(query_string=b"src="), Visitor(query_string=b"source=x")),
    ({"query": {"src": "a b", "v": "2"}}, Visitor(query_string=b"v=2&src=a%20b"), Visitor(query_string=b"src=a+b")),
    ({"ip": ["203.0.113.0/24"]}, Visitor(client_ip="203.0.113.77"), Visitor(client_ip="203.0.114.1")),
    ({"ip": ["203.0.113.0/24"]}, Visitor(client_ip="::ffff:203.0.113.9"), Visitor(client_ip="not-an-address")),
    ({"ip": ["2001:db8::/32", "10.0.0.0/8"]}, Visitor(client_ip="2001:db8::1"), Visitor(client_ip="2001:db9::1")),
])
def test_each_condition_matches_and_does_not(conditions: dict[str, Any], matching: Visitor, other: Visitor) -> None:
    assert routed(conditions, matching)
    assert not routed(conditions, other)


def test_after_and_before_bound_a_period() -> None:
    period = {"after": "2026-06-01T00:00:00Z", "before": "2026-06-08T00:00:00+02:00"}
    assert routed(period, Visitor(), at("2026-06-01T00:00:00Z"))  # `after` is inclusive
    assert routed(period, Visitor(), at("2026-06-07T21:59:59Z"))
    assert not routed(period, Visitor(), at("2026-05-31T23:59:59Z"))
    assert not routed(period, Visitor(), at("2026-06-07T22:00:00Z"))  # `before` is exclusive


def test_every_condition_of_a_rule_must_match() -> None:
    both = {"country": ["DE"], "language": ["de"]}
    assert routed(both, Visitor(country="DE", accept_language="de"))
    assert not routed(both, Visitor(country="DE", accept_language="fr"))
    assert not routed(both, Visitor(country="FR", accept_language="de"))


def test_the_first_matching_rule_wins() -> None:
    rules = routing(({"country": ["DE"]}, "first"), ({"device": ["ios"]}, "second"))
    assert rules.choose(Visitor(country="DE", user_agent=IPHONE), NOON) == \
        Choice(0, None, Destination("url", "https://example.com/first"))
    assert rules.choose(Visitor(country="FR", user_agent=IPHONE), NOON) == \
        Choice(1, None, Destination("url", "https://example.com/second"))
    assert rules.choose(Visitor(country="FR"), NOON) is None  # the code's destination applies


def test_rules_on_the_address_keep_their_place_among_the_others() -> None:
    """A visitor outside every network the rules name skips the rules on `ip` at once (Routing.index): the
    rules around them still answer in order, inside the networks as outside, and without an address."""
    rules = routing(({"ip": ["203.0.113.0/24"], "query": {"src": "flyer"}}, "office-flyer"),
                    ({"query": {"src": "flyer"}}, "flyer"),
                    ({"ip": ["203.0.113.0/24", "2001:db8::/32"]}, "office"),
                    ({"device": ["ios"]}, "phone"))

    def answer(client_ip: str, query: bytes = b"", user_agent: str = "") -> str | None:
        choice = rules.choose(Visitor(client_ip=client_ip, query_string=query, user_agent=user_agent), NOON)
        return choice.destination.url.rsplit("/", 1)[1] if choice is not None and choice.destination.url else None

    for _ in range(2):  # the second round is answered from the memo
        assert answer("203.0.113.7", b"src=flyer") == "office-flyer"
        assert answer("198.51.100.7", b"src=flyer") == "flyer"
        assert answer("203.0.113.7") == "office"
        assert answer("2001:db8::7", user_agent=IPHONE) == "office"
        assert answer("198.51.100.7", user_agent=IPHONE) == "phone"
        assert answer("unix:/run/edge.sock", b"src=flyer", IPHONE) == "flyer"  # no address: no `ip` rule matches
        assert answer("198.51.100.7") is None


def test_group_rules_come_after_the_codes_own_and_only_for_an_inheriting_code() -> None:
    own = stored_rules(({"country": ["DE"]}, "own"))
    group = stored_rules(({"country": ["DE", "FR"]}, "group"))
    inheriting = compile_routing(own, None, "qr_1", group, None, "grp_1", inherits=True)
    assert inheriting is not None
    assert inheriting.choose(Visitor(country="DE"), NOON) == Choice(0, None, Destination("url", "https://example.com/own"))
    assert inheriting.choose(Visitor(country="FR"), NOON) == \
        Choice(1, None, Destination("url", "https://example.com/group"))
    broken_out = compile_routing(own, None, "qr_1", group, stored_split(50, 50), "grp_1", inherits=False)
    assert broken_out is not None and broken_out.choose(Visitor(country="FR", visitor_hash="v"), NOON) is None
    assert compile_routing([], None, "qr_1", group, None, "grp_1", inherits=False) is None


def test_the_codes_split_wins_over_the_groups_and_rules_win_over_both() -> None:
    group_split = stored_split(1, 1)
    own_split = stored_split(1, 1, 1)
    code = compile_routing(stored_rules(({"country": ["DE"]}, "rule")), own_split, "qr_1", [], group_split,
                           "grp_1", inherits=True)
    assert code is not None and code.split is not None and len(code.split.destinations) == 3
    assert code.choose(Visitor(country="DE", visitor_hash="x"), NOON).rule == 0  # type: ignore[union-attr]
    inheriting = compile_routing([], None, "qr_2", [], group_split, "grp_1", inherits=True)
    assert inheriting is not None and inheriting.split is not None and len(inheriting.split.destinations) == 2


def test_weekday_alone_in_a_time_zone() -> None:
    weekend = {"weekday": ["sat", "sun"], "timezone": "Pacific/Auckland"}
    assert routed(weekend, Visitor(), at("2026-06-05T13:00:00Z"))  # Friday in UTC, Saturday 01:00 in Auckland
    assert not routed(weekend, Visitor(), at("2026-06-05T11:00:00Z"))  # Friday 23:00 in Auckland


def test_a_window_that_crosses_midnight_belongs_to_the_day_it_starts() -> None:
    friday_night = {"weekday": ["fri"], "time": {"from": "22:00", "to": "02:00"}}
    assert routed(friday_night, Visitor(), at("2026-06-05T22:00:00Z"))  # Friday 22:00, `from` inclusive
    assert routed(friday_night, Visitor(), at("2026-06-05T23:30:00Z"))
    assert routed(friday_night, Visitor(), at("2026-06-06T01:59:59Z"))  # Saturday, still Friday's window
    assert not routed(friday_night, Visitor(), at("2026-06-06T02:00:00Z"))  # `to` exclusive
    assert not routed(friday_night, Visitor(), at("2026-06-05T21:59:59Z"))
    assert not routed(friday_night, Visitor(), at("2026-06-05T01:00:00Z"))  # Friday 01:00 is Thursday's window
    assert not routed(friday_night, Visitor(), at("2026-06-06T23:00:00Z"))  # Saturday night is not listed
    every_night = {"time": {"from": "22:00", "to": "02:00"}}
    assert routed(every_night, Visitor(), at("2026-06-03T01:00:00Z"))
    assert not routed(every_night, Visitor(), at("2026-06-03T12:00:00Z"))
    until_midnight = {"time": {"from": "18:00", "to": "24:00"}}
    assert routed(until_midnight, Visitor(), at("2026-06-03T23:59:59Z"))
    assert not routed(until_midnight, Visitor(), at("2026-06-04T00:00:00Z"))


def test_windows_keep_local_hours_across_dst_changes() -> None:
    lunch = {"weekday": ["mon", "tue", "wed", "thu", "fri"], "time": {"from": "11:30", "to": "14:30"},
             "timezone": "Europe/Berlin"}
    assert routed(lunch, Visitor(), at("2026-03-27T10:30:00Z"))  # Friday, CET: 11:30 local
    assert not routed(lunch, Visitor(), at("2026-03-27T09:30:00Z"))  # 10:30 local
    assert routed(lunch, Visitor(), at("2026-03-30T09:30:00Z"))  # Monday, CEST: 11:30 local
    assert not routed(lunch, Visitor(), at("2026-03-30T12:30:00Z"))  # 14:30 local
    # Saturday night → Sunday morning, the night the clocks go forward (02:00 → 03:00 on 29 March)
    night = {"weekday": ["sat"], "time": {"from": "22:00", "to": "06:00"}, "timezone": "Europe/Berlin"}
    assert routed(night, Visitor(), at("2026-03-28T21:00:00Z"))  # 22:00 CET
    assert routed(night, Visitor(), at("2026-03-29T03:59:00Z"))  # 05:59 CEST
    assert not routed(night, Visitor(), at("2026-03-29T04:30:00Z"))  # 06:30 CEST (05:30 if the offset stuck)
    # …and the night they go back (03:00 → 02:00 on 25 October)
    assert routed(night, Visitor(), at("2026-10-24T20:00:00Z"))  # 22:00 CEST
    assert routed(night, Visitor(), at("2026-10-25T04:30:00Z"))  # 05:30 CET (06:30 if the offset stuck)
    assert not routed(night, Visitor(), at("2026-10-25T05:00:00Z"))  # 06:00 CET


def visitors(count: int) -> list[str]:
    return [hashlib.blake2b(f"visitor {i}".encode(), digest_size=16).hexdigest() for i in range(count)]


def test_split_follows_the_weights_over_ten_thousand_visitors() -> None:
    compiled = compile_routing([], stored_split(70, 20, 10), "qr_1")
    assert compiled is not None
    seen = Counter(compiled.choose(Visitor(visitor_hash=h), NOON).variant for h in visitors(10_000))  # type: ignore[union-attr]
    for variant, weight in enumerate((0.7, 0.2, 0.1)):
        assert abs(seen[variant] / 10_000 - weight) <= 0.02, seen


def test_the_same_visitor_always_gets_the_same_variant() -> None:
    compiled = compile_routing([], stored_split(50, 50), "qr_1")
    recompiled = compile_routing([], stored_split(50, 50), "qr_1")  # e.g. another edge process
    assert compiled is not None and recompiled is not None
    for visitor_hash in visitors(200):
        first = compiled.choose(Visitor(visitor_hash=visitor_hash), NOON)
        assert all(compiled.choose(Visitor(visitor_hash=visitor_hash), NOON + s) == first for s in range(3))
        assert recompiled.choose(Visitor(visitor_hash=visitor_hash), NOON) == first


def test_a_visitors_variant_does_not_move_across_releases() -> None:
    """The draw is BLAKE2b-64 of the owner's id, a newline and the visitor hash, modulo the total weight: an
    edge upgraded (or one process of another release beside it) keeps every visitor on their variant."""
    compiled = compile_routing([], stored_split(1, 3), "grp_7")
    assert compiled is not None
    for visitor_hash in visitors(500):
        digest = hashlib.blake2b(b"grp_7\n" + visitor_hash.encode(), digest_size=8).digest()
        expected = 0 if int.from_bytes(digest, "big") % 4 < 1 else 1
        assert compiled.choose(Visitor(visitor_hash=visitor_hash), NOON).variant == expected  # type: ignore[union-attr]


def test_splits_of_different_owners_are_drawn_independently() -> None:
    one, other = compile_routing([], stored_split(50, 50), "qr_1"), compile_routing([], stored_split(50, 50), "qr_2")
    assert one is not None and other is not None
    same = sum(one.choose(Visitor(visitor_hash=h), NOON) == other.choose(Visitor(visitor_hash=h), NOON)
               for h in visitors(2_000))
    assert 0.45 <= same / 2_000 <= 0.55  # not the same coin for every code


def test_remembered_answers_are_the_answers_of_a_fresh_evaluation() -> None:
    rules = (({"device": ["ios"], "language": ["de"]}, "a"), ({"ip": ["203.0.113.0/24"]}, "b"),
             ({"query": {"src": None}, "country": ["DE"]}, "c"), ({"after": "2026-06-03T12:30:00Z"}, "d"),
             ({"weekday": ["wed"], "time": {"from": "12:10", "to": "12:20"}, "timezone": "Europe/Berlin"}, "e"))
    remembered = rules[0], rules[3], rules[4]  # no `ip`, no `query`: facts shared by many visitors
    visitors = [Visitor(user_agent=agent, accept_language=language, country=country, client_ip=ip,
                        query_string=query)
                for agent in (IPHONE, WINDOWS_EDGE) for language in ("de", "fr") for country in ("DE", None)
                for ip in ("203.0.113.9", "198.51.100.1") for query in (b"src=x", b"")]
    instants = [NOON + minutes * 60 - 7200 for minutes in range(0, 45, 3)]  # 10:00 UTC = 12:00 in Berlin
    for subset in (rules, remembered):
        remembering = routing(*subset)
        for _ in range(2):  # the second pass is answered from memory
            for visitor in visitors:
                for now in instants:
                    assert remembering.choose(visitor, now) == routing(*subset).choose(visitor, now)
        # What is remembered never holds an address or a query, whichever rules read them.
        assert remembering.memo and not any(text in repr(facts) for facts in remembering.memo
                                            for text in ("203.0.113", "198.51.100", "src"))


def test_a_memo_holds_what_the_rules_name_never_the_visitors_own_text() -> None:
    """docs/rules.md: a memo is keyed by the devices, browser, languages and country as far as the rules name
    them, so that it stays small in bytes however many visitors a bot invents, and is shared by every user
    agent of one phone model."""
    by_query = routing(({"query": {"lang": "de"}}, "a"))
    by_address = routing(({"ip": ["203.0.113.0/24"], "device": ["ios"]}, "a"))
    by_agent = routing(({"device": ["ios"], "language": ["de"]}, "a"), ({"country": ["AT"]}, "b"))
    for n in range(100):
        visitor = Visitor(user_agent=IPHONE + "x" * (n * 10), query_string=f"lang=de&n={n}".encode(),
                          client_ip=f"203.0.113.{n}", accept_language=f"de, x{n}, en;q=0.9", country=f"A{n % 10}")
        assert by_query.choose(visitor, NOON) is not None and by_address.choose(visitor, NOON) is not None
        assert by_agent.choose(visitor, NOON) is not None
    assert list(by_query.memo) == [None]  # the rule reads nothing else: one entry, whatever the queries
    assert list(by_address.memo) == [(frozenset({"ios"}), None, None, None)]  # no address, no user agent kept
    assert list(by_agent.memo) == [(frozenset({"ios"}), None, frozenset({"de"}), None)]
    austrian = by_agent.choose(Visitor(user_agent=IPHONE, country="AT"), NOON)
    assert austrian is not None and austrian.destination.url == "https://example.com/b"
    assert len(by_agent.memo) == 2


def held_by(scans: Any) -> int:
    """Bytes still allocated after `scans()` once the global caches of visitor facts let go of what they hold."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        scans()
        preferred_languages.cache_clear()
        address_bits.cache_clear()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_memo_stays_small_however_many_networks_its_rules_name() -> None:
    """docs/rules.md: a memo entry holds the rules left in the running, shared, not their networks — 4,096
    distinct facts (every subset of twelve named languages) on rules naming 1,900 networks."""
    languages = ["de", "fr", "it", "es", "nl", "pt", "pl", "sv", "da", "fi", "cs", "hu"]
    compiled = routing(*[({"ip": [f"10.{r}.{n}.0/24" for n in range(100)]}, f"net{r}") for r in range(19)],
                       ({"language": languages}, "lang"))

    def scans() -> None:
        for subset in range(1 << len(languages)):
            header = ",".join(language for bit, language in enumerate(languages) if subset >> bit & 1)
            compiled.choose(Visitor(accept_language=header, client_ip="198.51.100.7"), NOON)
    held = held_by(scans)
    assert len(compiled.memo) == 4096
    assert held < 8 << 20, f"one routing's memo holds {held / (1 << 20):.1f} MiB"  # 70 MiB with a copy per entry


def test_a_routing_keeps_no_language_its_rules_do_not_name() -> None:
    """A bot's invented Accept-Language lists (256 characters of three-letter tags) leave nothing in a routing
    that names one language: neither in its memo nor in what it remembers of visitors' language sets."""
    tags = ["".join(letters) for letters in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=3)]
    compiled = routing(({"language": ["de"]}, "de"))
    held = held_by(lambda: [compiled.choose(Visitor(accept_language=",".join(tags[n * 64:(n + 1) * 64])[:256]), NOON)
                            for n in range(64)])
    assert len(compiled.memo) == 1  # these visitors all have the same facts for this routing
    assert held < 64 << 10, f"a routing naming one language holds {held >> 10} KiB of visitors' languages"
