"""Static payloads (docs/api.md §2.7): each content type's fields → the exact text a phone expects."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.problems import field_error, from_validation_error, validation_problem
from shared.times import parse_rfc3339
from shared.urls import InvalidURL, normalize_destination_url

MAX_PAYLOAD_BYTES = 2048
Text = Annotated[str, StringConstraints(max_length=MAX_PAYLOAD_BYTES)]
Required = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PAYLOAD_BYTES)]
CRLF = "\r\n"


class _Content(BaseModel):
    # Strict: content comes as JSON, where a number is no text, date or boolean (`"hidden": 1` is a 422).
    model_config = ConfigDict(extra="forbid", strict=True)


class UrlContent(_Content):
    url: Required

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        if info.context and info.context.get("stored"):
            # Normalised when it was written, perhaps under an earlier release's host rules: an image of a code
            # already printed is no place to refuse it (docs/api.md §2.1).
            return value
        try:
            return normalize_destination_url(value)
        except InvalidURL as exc:
            raise ValueError(str(exc)) from None


class TextContent(_Content):
    text: Required


class EmailContent(_Content):
    to: Annotated[str, StringConstraints(pattern=r"^[^@\s,?]+@[^@\s,?]+$", max_length=254)]
    subject: Text = ""
    body: Text = ""


class SmsContent(_Content):
    number: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ().\-]{3,32}$")]
    message: Text = ""


class WifiContent(_Content):
    ssid: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    password: Annotated[str, StringConstraints(max_length=63)] = ""
    encryption: Literal["WPA", "WEP", "nopass"] = "WPA"
    hidden: bool = False

    @model_validator(mode="after")
    def _password_matches_encryption(self) -> WifiContent:
        if self.encryption == "nopass" and self.password:
            raise ValueError("password: must be empty when encryption is nopass")
        if self.encryption != "nopass" and not self.password:
            raise ValueError(f"password: is required for {self.encryption}")
        return self


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _when(value: Any) -> Any:
    """`2026-05-08` is an all-day date; anything else an RFC 3339 date-time with seconds and an offset
    (docs/api.md §4.1): a local time without one cannot be placed, and was read as UTC, hours off."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        return date.fromisoformat(value)
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, date):  # stored content, read back
        return value
    raise ValueError('must be a date such as "2026-05-08" or a date-time such as "2026-05-08T19:00:00Z"')


When = Annotated[datetime | date, BeforeValidator(_when)]


class EventContent(_Content):
    summary: Required
    start: When
    end: When | None = None
    location: Text = ""
    description: Text = ""

    @model_validator(mode="after")
    def _end_after_start(self) -> EventContent:
        if self.end is not None:
            if isinstance(self.start, datetime) != isinstance(self.end, datetime):
                raise ValueError("end: must be a date-time if start is one, a date if start is a date")
            if _as_utc(self.end) < _as_utc(self.start):
                raise ValueError("end: must not be before start")
        return self


class VcardContent(_Content):
    first_name: Text = ""
    last_name: Text = ""
    organization: Text = ""
    title: Text = ""
    phone: Text = ""
    email: Text = ""
    url: Text = ""
    address: Text = ""
    note: Text = ""

    @model_validator(mode="after")
    def _has_a_name(self) -> VcardContent:
        if not (self.first_name or self.last_name or self.organization):
            raise ValueError("first_name: a name or an organization is required")
        return self


def _as_utc(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def fold(line: str) -> str:
    """RFC 5545 / RFC 2425 folding: at most 75 octets a line, never splitting a UTF-8 character."""
    out, current, size = [], "", 0
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > 75:
            out.append(current)
            current, size = " ", 1
        current += char
        size += width
    out.append(current)
    return CRLF.join(out)


def escape_text(value: str) -> str:
    """TEXT values of iCalendar and vCard: backslash, semicolon, comma and newlines escaped."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def escape_wifi(value: str) -> str:
    return re.sub(r'([\\;,:"])', r"\\\1", value)


def _lines(*pairs: tuple[str, str]) -> str:
    return CRLF.join(fold(f"{name}:{value}") for name, value in pairs)


def encode_url(c: UrlContent) -> str:
    return c.url


def encode_text(c: TextContent) -> str:
    return c.text


def encode_email(c: EmailContent) -> str:
    query = "&".join(f"{name}={quote(value, safe='')}" for name, value in
                     (("subject", c.subject), ("body", c.body)) if value)
    return f"mailto:{quote(c.to, safe='@')}" + (f"?{query}" if query else "")


def encode_sms(c: SmsContent) -> str:
    number = re.sub(r"[ ().\-]", "", c.number)
    return f"SMSTO:{number}:{c.message}"


def encode_wifi(c: WifiContent) -> str:
    password = f"P:{escape_wifi(c.password)};" if c.encryption != "nopass" else ""
    return f"WIFI:T:{c.encryption};S:{escape_wifi(c.ssid)};{password}H:{'true' if c.hidden else 'false'};;"


def _ical_time(name: str, value: datetime | date) -> tuple[str, str]:
    if isinstance(value, datetime):
        return name, _as_utc(value).strftime("%Y%m%dT%H%M%SZ")
    return f"{name};VALUE=DATE", value.strftime("%Y%m%d")


def encode_event(c: EventContent) -> str:
    pairs = [("BEGIN", "VEVENT"), ("SUMMARY", escape_text(c.summary)), _ical_time("DTSTART", c.start)]
    if c.end is not None:
        pairs.append(_ical_time("DTEND", c.end))
    pairs += [(name, escape_text(value)) for name, value in (("LOCATION", c.location),
                                                              ("DESCRIPTION", c.description)) if value]
    return _lines(*pairs, ("END", "VEVENT"))


def encode_vcard(c: VcardContent) -> str:
    full_name = " ".join(part for part in (c.first_name, c.last_name) if part) or c.organization
    pairs = [("BEGIN", "VCARD"), ("VERSION", "3.0"),
             ("N", f"{escape_text(c.last_name)};{escape_text(c.first_name)};;;"), ("FN", escape_text(full_name))]
    optional = (("ORG", c.organization), ("TITLE", c.title), ("TEL", c.phone), ("EMAIL", c.email),
                ("URL", c.url), ("NOTE", c.note))
    pairs += [(name, escape_text(value)) for name, value in optional if value]
    if c.address:  # one free-text address: the street component of a structured ADR
        pairs.append(("ADR", f";;{escape_text(c.address)};;;;"))
    return _lines(*pairs, ("END", "VCARD"))


ENCODERS: dict[str, tuple[type[_Content], Callable[[Any], str]]] = {
    "url": (UrlContent, encode_url), "text": (TextContent, encode_text), "email": (EmailContent, encode_email),
    "sms": (SmsContent, encode_sms), "wifi": (WifiContent, encode_wifi), "event": (EventContent, encode_event),
    "vcard": (VcardContent, encode_vcard),
}


def parse_content(type: str, content: dict[str, Any] | None, *, stored: bool = False) -> _Content:
    """`content` checked and normalised; `stored`: it was so when written, and is read now (its URL is taken as
    it is)."""
    if type not in ENCODERS:
        raise field_error("type", f"must be one of {', '.join(ENCODERS)}")
    model, _ = ENCODERS[type]
    try:
        return model.model_validate(content or {}, context={"stored": stored})
    except ValidationError as exc:
        errors = []
        for error in from_validation_error(exc, prefix="content.").errors:
            field, sep, message = error["message"].partition(": ")
            if error["field"] == "content." and sep:  # model-level errors name their field as "field: message"
                error = {"field": f"content.{field}", "message": message}
            errors.append(dict(error))
        raise validation_problem(errors) from None


def encode_static(type: str, content: dict[str, Any] | None, *, stored: bool = False) -> str:
    """The payload a static code encodes; a field-level 422 problem when the content is not valid (`stored`: a
    stored code's content, whose URL was normalised when it was written, parse_content)."""
    parsed = parse_content(type, content, stored=stored)
    payload = ENCODERS[type][1](parsed)
    size = len(payload.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise field_error("content", f"encodes to {size} bytes; a QR code's payload is limited to "
                                     f"{MAX_PAYLOAD_BYTES} bytes")
    return payload
