"""The events outbox as the API shows it: newest first, exactly what webhook subscribers receive."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, cast

from typing_extensions import TypedDict

from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.listing import Listing, PageQuery, owned_page
from shared.outbox import EVENT_TYPES, event_object
from shared.problems import not_found

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class EventData(TypedDict):
    object: dict[str, Any]  # the object after the change
    previous_attributes: NotRequired[dict[str, Any]]  # the changed fields, before


class EventPublic(TypedDict):
    id: str
    object: Literal["event"]
    type: str
    livemode: bool
    created_at: str
    data: EventData


class EventListQuery(PageQuery):
    type: EventType | None = None


async def list_events(ctx: ServiceContext, key: ApiKey, query: EventListQuery) -> Listing[EventPublic]:
    where, args = ("type = $3", (query.type,)) if query.type is not None else ("", ())
    rows, total = await owned_page(ctx.db, "events", key, query, where=where, args=args, order="seq DESC")
    return Listing([cast(EventPublic, event_object(r)) for r in rows], total, query.limit, query.offset)


async def get_event(ctx: ServiceContext, key: ApiKey, event_id: str) -> EventPublic:
    row = await ctx.db.fetchrow("SELECT * FROM events WHERE id = $1 AND org_id = $2 AND livemode = $3",
                                event_id, key.org_id, key.livemode)
    if row is None:
        raise not_found("event")
    return cast(EventPublic, event_object(row))
