"""Request bodies of `/v1/webhook-endpoints`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shared.outbox import EVENT_TYPES

EndpointURL = Annotated[str, StringConstraints(min_length=1, max_length=2048, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=500)]
EventTypes = Annotated[list[str], Field(min_length=1, max_length=len(EVENT_TYPES))]
ALL_EVENTS = "*"


def check_event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if ALL_EVENTS in value:
        if value != [ALL_EVENTS]:
            raise ValueError('"*" subscribes to every event type and cannot be combined with others')
        return value
    if unknown := [t for t in value if t not in EVENT_TYPES]:
        raise ValueError(f"unknown event types {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(value), key=value.index)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookEndpointCreate(Body):
    url: EndpointURL
    events: EventTypes
    description: Description = ""
    enabled: bool = True

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return check_event_types(value)


class WebhookEndpointUpdate(Body):
    url: EndpointURL | None = None
    events: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return check_event_types(value)
