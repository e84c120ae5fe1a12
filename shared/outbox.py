"""The events outbox: one row per change, written in the change's own transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import asyncpg

from shared.ids import new_id
from shared.times import timestamp

EVENT_TYPES = ("qr.created", "qr.updated", "qr.deleted", "qr.scan_threshold", "qr.expired",
               "qr_group.created", "qr_group.updated", "qr_group.deleted", "export.succeeded", "export.failed")


async def record_event(conn: asyncpg.Connection[Any], org_id: str, livemode: bool, type: str,
                       obj: Mapping[str, Any], previous: Mapping[str, Any] | None = None) -> str:
    assert type in EVENT_TYPES, type
    event_id = new_id("evt")
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    await conn.execute("INSERT INTO events (id, org_id, livemode, type, data) VALUES ($1, $2, $3, $4, $5)",
                       event_id, org_id, livemode, type, data)
    return event_id


class OutboxPosition(NamedTuple):
    """A place in the outbox in the order the cache sync follows it: the writing transaction's id
    (`events.xid`), then `seq`. Not `seq` alone: it is taken at INSERT, not at COMMIT, so an event can still
    commit below a `seq` already read; no event can commit any more below the oldest transaction still
    running (docs/freshness.md, "The cache sync's cursor")."""

    xid: int
    seq: int

    def encode(self) -> str:
        return f"{self.xid}:{self.seq}"

    @classmethod
    def decode(cls, raw: bytes | str) -> OutboxPosition:
        xid, _, seq = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
        return cls(int(xid), int(seq))


def previous_attributes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The fields whose value changed, with their value before the change."""
    ignored = {"updated_at", "version", "resolved", "image_url"}
    return {k: v for k, v in before.items() if k not in ignored and after.get(k) != v}


def event_object(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "object": "event", "type": row["type"], "livemode": row["livemode"],
            "created_at": timestamp(row["created_at"]), "data": row["data"]}

