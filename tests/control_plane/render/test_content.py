from __future__ import annotations

from typing import Any

import pytest

from control_plane.render.content import encode_static, fold
from shared.problems import Problem


def test_wifi_escapes_every_special_character() -> None:
    payload = encode_static("wifi", {"ssid": 'Café;Bar,"1":\\', "password": "p:a;s,s\"w\\", "encryption": "WPA",
                                     "hidden": True})
    assert payload == 'WIFI:T:WPA;S:Café\\;Bar\\,\\"1\\"\\:\\\\;P:p\\:a\\;s\\,s\\"w\\\\;H:true;;'


def test_open_wifi_has_no_password_field() -> None:
    assert encode_static("wifi", {"ssid": "Guest", "encryption": "nopass"}) == "WIFI:T:nopass;S:Guest;H:false;;"


def test_email_is_a_percent_encoded_mailto() -> None:
    payload = encode_static("email", {"to": "sales@example.com", "subject": "Table 12 & more", "body": "Hi?\nBye"})
    assert payload == "mailto:sales@example.com?subject=Table%2012%20%26%20more&body=Hi%3F%0ABye"


def test_sms_keeps_only_dialable_characters() -> None:
    assert encode_static("sms", {"number": "+1 (555) 123-4567", "message": "Table 12: ready"}) == \
        "SMSTO:+15551234567:Table 12: ready"


def test_event_is_an_escaped_utc_vevent() -> None:
    payload = encode_static("event", {"summary": "Launch; party, big", "start": "2026-05-08T12:30:00+02:00",
                                      "end": "2026-05-08T14:00:00Z", "location": "Hall 1\nRoom 2"})
    assert payload == ("BEGIN:VEVENT\r\nSUMMARY:Launch\\; party\\, big\r\nDTSTART:20260508T103000Z\r\n"
                       "DTEND:20260508T140000Z\r\nLOCATION:Hall 1\\nRoom 2\r\nEND:VEVENT")


def test_all_day_event_uses_dates() -> None:
    payload = encode_static("event", {"summary": "Fair", "start": "2026-05-08", "end": "2026-05-10"})
    assert "DTSTART;VALUE=DATE:20260508\r\nDTEND;VALUE=DATE:20260510" in payload


def test_vcard_3_escapes_and_structures_names() -> None:
    payload = encode_static("vcard", {"first_name": "Jörg", "last_name": "Müller", "organization": "ACME, Inc.",
                                      "phone": "+49 30 1234", "email": "j@acme.example", "note": "a;b"})
    assert payload == ("BEGIN:VCARD\r\nVERSION:3.0\r\nN:Müller;Jörg;;;\r\nFN:Jörg Müller\r\nORG:ACME\\, Inc.\r\n"
                       "TEL:+49 30 1234\r\nEMAIL:j@acme.example\r\nNOTE:a\\;b\r\nEND:VCARD")


def test_long_lines_fold_at_75_octets_without_splitting_characters() -> None:
    folded = fold("NOTE:" + "é" * 60)
    lines = folded.split("\r\n")
    assert all(len(line.encode()) <= 75 for line in lines) and len(lines) == 2
    assert lines[1].startswith(" ") and "".join(line.removeprefix(" ") for line in lines) == "NOTE:" + "é" * 60


@pytest.mark.parametrize(("type", "content", "field"), [
    ("wifi", {"ssid": "Cafe", "encryption": "WPA"}, "content.password"),
    ("wifi", {"ssid": "Cafe", "encryption": "nopass", "password": "x"}, "content.password"),
    ("wifi", {"ssid": "Cafe", "password": "x", "encryption": "WPA3"}, "content.encryption"),
    ("email", {"to": "not-an-address"}, "content.to"),
    ("sms", {"number": "call me"}, "content.number"),
    ("event", {"summary": "x", "start": "2026-05-08T10:00:00Z", "end": "2026-05-07T10:00:00Z"}, "content.end"),
    ("event", {"summary": "x", "start": "tomorrow"}, "content.start"),
    # docs/api.md §4.1: a date-time has seconds and an offset; without one it was taken as UTC, hours off
    ("event", {"summary": "x", "start": "2026-05-08T19:00:00"}, "content.start"),
    ("event", {"summary": "x", "start": "2026-05-08T19:00"}, "content.start"),
    ("event", {"summary": "x", "start": "2026-05-08 19:00:00"}, "content.start"),
    ("event", {"summary": "x", "start": "2026-05-08T19:00:00Z", "end": "2026-05-08T21:00:00"}, "content.end"),
    ("event", {"summary": "x", "start": "2026-W19-5"}, "content.start"),  # a date is YYYY-MM-DD only
    ("vcard", {"title": "CEO"}, "content.first_name"),
    ("url", {"url": "javascript:alert(1)"}, "content.url"),
    ("text", {"text": "x", "colour": "red"}, "content.colour"),
    ("text", {"text": "é" * 1100}, "content"),
    ("fax", {"number": "1"}, "type"),
])
def test_invalid_content_is_a_field_level_422(type: str, content: dict[str, Any], field: str) -> None:
    with pytest.raises(Problem) as raised:
        encode_static(type, content)
    assert raised.value.status == 422 and raised.value.type.endswith("/validation")
    assert [error["field"] for error in raised.value.errors] == [field]


def test_payloads_up_to_2_kb_are_accepted() -> None:
    assert len(encode_static("text", {"text": "a" * 2048})) == 2048
