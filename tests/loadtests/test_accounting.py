"""The load test's accounting names every lost, duplicated, wrong-outcome, stale or failed scan."""

from __future__ import annotations

from loadtests.accounting import Answer, GroupState, History, Write, account

OLD = GroupState("https://menu.example.com/old", "active", "fall24")
NEW = GroupState("https://menu.example.com/new", "active", "fall24")
PAUSED = GroupState("https://menu.example.com/new", "inactive", "fall24")


def history(*writes: Write) -> History:
    h = History()
    h.add(Write("grp_1", 1, 0.0, 0.0, OLD))
    for write in writes:
        h.add(write)
    return h


def scan(ref: str, state: GroupState, started: float = 10.0, finished: float = 10.01, query: str = "") -> Answer:
    status, location = state.expected(query)
    return Answer(ref, "qr_1", "grp_1", "GET", query, started, finished, status, location)


def test_every_answer_stored_once_with_its_outcome_is_clean() -> None:
    answers = [scan("a", OLD), scan("b", OLD, query="utm_source=t1")]
    report = account(answers, {"a": ["redirected"], "b": ["redirected"]}, history())
    assert report.ok and report.answered == 2 and report.stored == 2


def test_a_lost_and_a_duplicated_scan_of_the_same_code_do_not_cancel_out() -> None:
    report = account([scan("a", OLD), scan("b", OLD)], {"b": ["redirected", "redirected"]}, history())
    assert [a.ref for a in report.lost] == ["a"]
    assert [(a.ref, n) for a, n in report.duplicated] == [("b", 2)]
    assert not report.ok


def test_a_redirect_stored_as_another_outcome_is_reported() -> None:
    report = account([scan("a", OLD)], {"a": ["inactive"]}, history())
    assert [(a.ref, outcome) for a, outcome in report.wrong_outcome] == [("a", "inactive")]


def test_answers_outside_the_contract_fail_the_run() -> None:
    unavailable = Answer("a", "qr_1", "grp_1", "GET", "", 1.0, 1.1, 503, None)
    timed_out = Answer("b", "qr_1", "grp_1", "GET", "", 1.0, 11.0, 0, None, "Timeout")
    report = account([unavailable, timed_out], {}, history())
    assert [a.ref for a in report.failed] == ["a", "b"] and not report.ok


def test_the_old_destination_after_an_acknowledged_write_is_stale() -> None:
    write = Write("grp_1", 2, 9.0, 9.5, NEW)
    report = account([scan("a", OLD, started=9.6)], {"a": ["redirected"]}, history(write))
    assert [a.ref for a, _ in report.stale] == ["a"]
    assert account([scan("b", NEW, started=9.6)], {"b": ["redirected"]}, history(write)).ok


def test_a_grace_window_forgives_only_what_it_covers() -> None:
    write = Write("grp_1", 2, 9.0, 9.5, NEW)
    assert account([scan("a", OLD, started=9.6)], {"a": ["redirected"]}, history(write), grace=0.2).ok
    assert not account([scan("a", OLD, started=9.8)], {"a": ["redirected"]}, history(write), grace=0.2).ok


def test_a_write_racing_with_the_scan_may_be_seen_or_not() -> None:
    write = Write("grp_1", 2, 9.9, 10.2, NEW)  # sent before the scan finished, acknowledged after it started
    for state in (OLD, NEW):
        assert account([scan("a", state)], {"a": ["redirected"]}, history(write)).ok
    later = Write("grp_1", 2, 10.5, 10.6, NEW)  # sent after the scan had its answer: it cannot be seen
    assert not account([scan("a", NEW)], {"a": ["redirected"]}, history(later)).ok


def test_writes_are_ordered_by_version_not_by_arrival() -> None:
    # Version 3 (paused) was acknowledged before version 2's response arrived: the state in force is 3's.
    paused = Write("grp_1", 3, 9.1, 9.2, PAUSED)
    rerouted = Write("grp_1", 2, 9.0, 9.4, NEW)
    report = account([scan("a", NEW, started=9.5)], {"a": ["redirected"]}, history(rerouted, paused))
    assert [a.ref for a, _ in report.stale] == ["a"]
    assert account([scan("b", PAUSED, started=9.5)], {"b": ["inactive"]}, history(rerouted, paused)).ok
