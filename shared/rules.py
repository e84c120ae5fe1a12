"""The `rules` and `split` fields as the API accepts them (docs/rules.md, docs/api.md §3.5).

One definition of every limit: the API validates bodies with these models (errors name the field, e.g.
`rules.2.if.time.to`), stores `dump_rules`/`dump_split` output, and the edge compiles that stored JSON
(`shared.routing`) without validating it again.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal, get_args
from uuid import UUID
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.times import parse_rfc3339
from shared.urls import InvalidURL, normalize_destination_url
from shared.user_agents import BROWSERS, DEVICES, Browser, Device

MAX_RULES = 20
MIN_VARIANTS, MAX_VARIANTS = 2, 10
MIN_WEIGHT, MAX_WEIGHT = 1, 100
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)
END_OF_DAY = "24:00"  # allowed as a window's `to` only


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _url(value: str) -> str:
    try:
        return normalize_destination_url(value)
    except InvalidURL as exc:
        raise ValueError(str(exc)) from None


class RouteDestination(Strict):
    """Where a rule, a split variant or `expired_destination` sends the visitor: a type and its field."""

    type: Literal["url", "page", "chatbot", "knowledge_base"]
    url: Annotated[str, AfterValidator(_url)] | None = Field(None, validate_default=True)
    page: UUID | None = Field(None, validate_default=True)
    chatbot: UUID | None = Field(None, validate_default=True)
    knowledge_base: UUID | None = Field(None, validate_default=True)

    @field_validator("url", "page", "chatbot", "knowledge_base")
    @classmethod
    def _companion(cls, value: object, info: ValidationInfo) -> object:
        chosen = info.data.get("type")
        if chosen == info.field_name and value is None:
            raise ValueError(f"is required when type is {chosen!r}")
        if chosen is not None and chosen != info.field_name and value is not None:
            raise ValueError(f"must be null when type is {chosen!r}")
        return value


def _language(value: str) -> str:
    if not (2 <= len(value) <= 3 and value.isascii() and value.isalpha()):
        raise ValueError('must be a primary language tag such as "de" (it also matches "de-AT")')
    return value.lower()


def _country(value: str) -> str:
    if not (len(value) == 2 and value.isascii() and value.isalpha()):
        raise ValueError('must be an ISO 3166-1 alpha-2 country code such as "DE"')
    return value.upper()


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError('must be an IP address or CIDR block such as "203.0.113.0/24"') from None


def _clock(value: str) -> str:
    hours, sep, minutes = value.partition(":")
    if not (sep and value.isascii() and len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit()
            and (int(hours) < 24 and int(minutes) < 60 or value == END_OF_DAY)):
        raise ValueError('must be a time of day "HH:MM" from "00:00" to "23:59" ("24:00" for `to`)')
    return value


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(value: str) -> str:
    if value not in _zone_names():
        raise ValueError('must be an IANA time zone name such as "Europe/Berlin"')
    return value


def _rfc3339(value: object) -> datetime:
    if isinstance(value, datetime):  # a body parsed once and validated again from Python; never from JSON
        return value
    return parse_rfc3339(value)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Language = Annotated[str, AfterValidator(_language)]
Country = Annotated[str, AfterValidator(_country)]
Cidr = Annotated[str, StringConstraints(max_length=64), AfterValidator(_cidr)]
Clock = Annotated[str, AfterValidator(_clock)]
# An RFC 3339 string with an offset (a JSON number is not a date-time); stored in UTC. The schema says
# `type: string, format: date-time`.
Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339), AfterValidator(_utc)]
QueryKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
QueryValue = Annotated[str, StringConstraints(max_length=512)]


class TimeWindow(Strict):
    """`from` ≤ local time < `to`; when `to` is earlier than `from` the window crosses midnight."""

    start: Clock = Field(alias="from")
    to: Clock

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if value == END_OF_DAY:
            raise ValueError('must be from "00:00" to "23:59"')
        return value

    @field_validator("to")
    @classmethod
    def _to(cls, value: str, info: ValidationInfo) -> str:
        if value == info.data.get("start") or (value == END_OF_DAY and info.data.get("start") == "00:00"):
            raise ValueError("must differ from `from` (leave `time` out for the whole day)")
        return value


class Conditions(Strict):
    """All conditions must match; a list matches when any of its values does."""

    device: Annotated[list[Device], Field(min_length=1, max_length=len(DEVICES))] | None = None
    browser: Annotated[list[Browser], Field(min_length=1, max_length=len(BROWSERS))] | None = None
    language: Annotated[list[Language], Field(min_length=1, max_length=50)] | None = None
    country: Annotated[list[Country], Field(min_length=1, max_length=250)] | None = None
    query: Annotated[dict[QueryKey, QueryValue | None], Field(min_length=1, max_length=10)] | None = None
    ip: Annotated[list[Cidr], Field(min_length=1, max_length=100)] | None = None
    after: Moment | None = None
    before: Moment | None = None
    weekday: Annotated[list[Weekday], Field(min_length=1, max_length=7)] | None = None
    time: TimeWindow | None = None
    timezone: Annotated[str, AfterValidator(_zone)] | None = Field(None, validate_default=True)

    @field_validator("before")
    @classmethod
    def _before(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        after = info.data.get("after")
        if value is not None and after is not None and value <= after:
            raise ValueError("must be later than `after`")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A key missing from info.data failed its own validation: then that error is the one to show.
        if value is not None and all(name in info.data and info.data[name] is None for name in ("weekday", "time")):
            raise ValueError("applies to `weekday` and `time`: give one of them")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Conditions:
        if all(getattr(self, name) is None for name in Conditions.model_fields):
            raise ValueError("a rule needs at least one condition (the code's destination is the default)")
        return self


class Rule(Strict):
    conditions: Conditions = Field(alias="if")
    destination: RouteDestination


class Variant(Strict):
    weight: Annotated[int, Field(strict=True, ge=MIN_WEIGHT, le=MAX_WEIGHT)]
    destination: RouteDestination


Rules = Annotated[list[Rule], Field(max_length=MAX_RULES)]
Split = Annotated[list[Variant], Field(min_length=MIN_VARIANTS, max_length=MAX_VARIANTS)]


def dump_destination(destination: RouteDestination) -> dict[str, Any]:
    return destination.model_dump(mode="json", exclude_none=True)


def dump_rules(rules: list[Rule]) -> list[dict[str, Any]]:
    """The stored and published form: `if` by its name, only the conditions given, times in UTC."""
    return [rule.model_dump(mode="json", by_alias=True, exclude_none=True) for rule in rules]


def dump_split(split: list[Variant]) -> list[dict[str, Any]]:
    return [variant.model_dump(mode="json", exclude_none=True) for variant in split]
