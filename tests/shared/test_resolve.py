from __future__ import annotations

from shared.resolve import resolve
from shared.rows import CodeRow, Destination, GroupRow
from shared.settings import Templates

PAGE = "a1c2e4f6-8b0d-4e2a-9c1b-3d5e7f9a2c4e"
BOT = "0b7e2f3c-1111-4a5b-8c9d-0e1f2a3b4c5d"
TEMPLATES = Templates()


def group(status: str | None = "active", destination: Destination | None = None) -> GroupRow:
    return GroupRow("grp_1", 3, status, destination or Destination("page", page=PAGE),
                    (("utm_campaign", "fall24"), ("utm_medium", "print")), (("venue", "Brunswick"),))


def code(status: str | None = None, destination: Destination | None = None, deleted: bool = False) -> CodeRow:
    return CodeRow("qr_1", 1, "org_1", True, "grp_1", status, destination or Destination(),
                   (("utm_medium", "table"),), (("table", "12"),), deleted)


def test_null_destination_inherits_the_group() -> None:
    r = resolve(code(), group(), TEMPLATES)
    assert (r.outcome, r.source, r.destination) == ("redirected", "group", Destination("page", page=PAGE))
    assert r.location is not None
    assert r.location.location == f"https://pages.example.com/p/{PAGE}?utm_campaign=fall24&utm_medium=table"
    assert r.properties == {"venue": "Brunswick", "table": "12"}


def test_child_destination_wins_over_the_group() -> None:
    r = resolve(code(destination=Destination("chatbot", chatbot=BOT)), group(), TEMPLATES)
    assert (r.outcome, r.source) == ("redirected", "code")
    assert r.location is not None and r.location.location.startswith(f"https://chat.example.com/c/{BOT}?")


def test_status_child_then_group_then_active() -> None:
    assert resolve(code(), group(status="inactive"), TEMPLATES).outcome == "inactive"
    assert resolve(code(status="active"), group(status="inactive"), TEMPLATES).outcome == "redirected"
    assert resolve(code(), group(status=None), TEMPLATES).status == "active"
    archived = resolve(code(status="archived"), group(), TEMPLATES)
    assert (archived.outcome, archived.http_status) == ("archived", 410)


def test_no_destination_anywhere_is_unconfigured() -> None:
    r = resolve(code(), None, TEMPLATES)
    assert (r.outcome, r.http_status, r.location, r.source) == ("unconfigured", 404, None, None)
    r = resolve(code(), group(destination=Destination()), TEMPLATES)
    assert r.outcome == "unconfigured"


def test_deleted_code_is_gone_whatever_its_status() -> None:
    r = resolve(code(status="inactive", deleted=True), group(), TEMPLATES)
    assert (r.outcome, r.http_status) == ("deleted", 410)


def test_a_group_row_of_another_group_is_ignored() -> None:
    other = GroupRow("grp_other", 1, "inactive", Destination("url", url="https://other.example/"))
    assert resolve(code(destination=Destination("url", url="https://x.example/")), other, TEMPLATES).outcome \
        == "redirected"
