"""The `rules` and `split` fields: every limit of API §3.5, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.problems import from_validation_error
from shared.rules import Rules, Split, dump_rules, dump_split

RULES: TypeAdapter[Any] = TypeAdapter(Rules)
SPLIT: TypeAdapter[Any] = TypeAdapter(Split)
URL = {"type": "url", "url": "https://example.com/x"}
PAGE = "a1c2e4f6-8b0d-4e2a-9c1b-3d5e7f9a2c4e"


def errors(adapter: TypeAdapter[Any], value: Any, prefix: str) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        adapter.validate_python(value)
    return {e["field"]: e["message"] for e in from_validation_error(caught.value, prefix).errors}


def rule(**conditions: Any) -> dict[str, Any]:
    return {"if": conditions, "destination": URL}


def test_the_contract_example_is_accepted_and_stored_normalised() -> None:
    stored = dump_rules(RULES.validate_python([
        {"if": {"device": ["ios"]}, "destination": {"type": "url", "url": "https://apps.apple.com/app/id1"}},
        {"if": {"country": ["de", "AT"], "language": ["DE"]}, "destination": URL},
        {"if": {"weekday": ["mon", "fri"], "time": {"from": "11:30", "to": "14:30"}, "timezone": "Europe/Berlin"},
         "destination": {"type": "page", "page": PAGE}},
        {"if": {"after": "2026-01-01T01:00:00+01:00", "ip": ["10.1.2.3/8"], "query": {"src": None}},
         "destination": {"type": "url", "url": "https://example.com/é"}},
    ]))
    assert stored[1]["if"] == {"language": ["de"], "country": ["DE", "AT"]}
    assert stored[2] == {"if": {"weekday": ["mon", "fri"], "time": {"from": "11:30", "to": "14:30"},
                                "timezone": "Europe/Berlin"}, "destination": {"type": "page", "page": PAGE}}
    assert stored[3]["if"] == {"query": {"src": None}, "ip": ["10.0.0.0/8"], "after": "2026-01-01T00:00:00Z"}
    assert stored[3]["destination"] == {"type": "url", "url": "https://example.com/%C3%A9"}
    assert dump_rules(RULES.validate_python(stored)) == stored  # the stored form reads back unchanged


def test_at_most_twenty_rules() -> None:
    RULES.validate_python([rule(country=["DE"])] * 20)
    assert "at most 20" in errors(RULES, [rule(country=["DE"])] * 21, "rules")["rules"]


@pytest.mark.parametrize(("conditions", "field", "says"), [
    ({}, "rules.0.if", "at least one condition"),
    ({"device": ["phone"]}, "rules.0.if.device.0", "'ios'"),
    ({"device": []}, "rules.0.if.device", "at least 1"),
    ({"browser": ["netscape"]}, "rules.0.if.browser.0", "'chrome'"),
    ({"language": ["de-AT"]}, "rules.0.if.language.0", "primary language tag"),
    ({"country": ["DEU"]}, "rules.0.if.country.0", "alpha-2"),
    ({"ip": ["300.1.1.1"]}, "rules.0.if.ip.0", "CIDR"),
    ({"query": {"": "x"}}, "rules.0.if.query..[key]", "at least 1 character"),
    ({"after": "2026-01-01T00:00:00"}, "rules.0.if.after", "offset"),
    ({"after": "2026-02-01T00:00:00Z", "before": "2026-01-01T00:00:00Z"}, "rules.0.if.before", "later than"),
    ({"weekday": ["monday"]}, "rules.0.if.weekday.0", "'mon'"),
    ({"time": {"from": "25:00", "to": "10:00"}}, "rules.0.if.time.from", "HH:MM"),
    ({"time": {"from": "\u00b2\u00b3:00", "to": "10:00"}}, "rules.0.if.time.from", "HH:MM"),  # isdigit() takes "²³"
    ({"time": {"from": "24:00", "to": "10:00"}}, "rules.0.if.time.from", "23:59"),
    ({"time": {"from": "10:00", "to": "10:00"}}, "rules.0.if.time.to", "must differ"),
    ({"time": {"from": "10:00", "until": "11:00"}}, "rules.0.if.time.until", "unknown field"),
    ({"weekday": ["mon"], "timezone": "Mars/Olympus"}, "rules.0.if.timezone", "IANA"),
    ({"country": ["DE"], "timezone": "Europe/Berlin"}, "rules.0.if.timezone", "applies to `weekday` and `time`"),
    ({"colour": ["red"]}, "rules.0.if.colour", "unknown field"),
])
def test_each_condition_is_validated_with_its_field_named(conditions: dict[str, Any], field: str, says: str) -> None:
    found = errors(RULES, [{"if": conditions, "destination": URL}], "rules.")
    assert field in found, found
    assert says in found[field]


def test_a_window_may_end_at_midnight_and_cross_it() -> None:
    RULES.validate_python([rule(time={"from": "18:00", "to": "24:00"}), rule(time={"from": "22:00", "to": "02:00"})])


@pytest.mark.parametrize(("destination", "field", "says"), [
    ({"type": "url"}, "rules.0.destination.url", "required"),
    ({"type": "page", "page": PAGE, "url": "https://a.example"}, "rules.0.destination.url", "must be null"),
    ({"type": "url", "url": "ftp://example.com"}, "rules.0.destination.url", "http or https"),
    ({"type": "chatbot", "chatbot": "not-a-uuid"}, "rules.0.destination.chatbot", "UUID"),
    ({"type": None}, "rules.0.destination.type", "'url'"),
])
def test_a_rule_destination_is_complete(destination: dict[str, Any], field: str, says: str) -> None:
    found = errors(RULES, [{"if": {"country": ["DE"]}, "destination": destination}], "rules.")
    assert says in found[field]


def variants(*weights: Any) -> list[dict[str, Any]]:
    return [{"weight": w, "destination": {"type": "url", "url": f"https://example.com/{i}"}}
            for i, w in enumerate(weights)]


def test_split_has_two_to_ten_variants_with_integer_weights_from_1_to_100() -> None:
    assert dump_split(SPLIT.validate_python(variants(1, 100))) == variants(1, 100)
    SPLIT.validate_python(variants(*[10] * 10))
    assert "at least 2" in errors(SPLIT, variants(50), "split")["split"]
    assert "at most 10" in errors(SPLIT, variants(*[10] * 11), "split")["split"]
    assert "greater than or equal to 1" in errors(SPLIT, variants(0, 50), "split.")["split.0.weight"]
    assert "less than or equal to 100" in errors(SPLIT, variants(50, 101), "split.")["split.1.weight"]
    assert "integer" in errors(SPLIT, variants("50", 50), "split.")["split.0.weight"]
    assert "integer" in errors(SPLIT, variants(50, 2.5), "split.")["split.1.weight"]
