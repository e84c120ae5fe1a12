"""The edge rows: what the edge needs of a code and of a group, cached in Redis as JSON.

Codes and groups are cached separately and joined at scan time, so a group change rewrites one key
whatever its number of codes. Every row carries the version of its PostgreSQL row; the write-through
never replaces a newer version with an older one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson
from msgspec.structs import astuple, force_setattr

from shared.settings import Templates

DESTINATION_TYPES = ("url", "page", "chatbot", "knowledge_base")
STATUSES = ("active", "inactive", "archived")
Pairs = tuple[tuple[str, str], ...]


class Destination(msgspec.Struct, frozen=True, gc=False):
    """gc=False: a cached code's objects are nothing the cycle collector traverses (edge/heap.py); they hold no
    reference cycles, only strings."""

    type: str | None = None
    url: str | None = None
    page: str | None = None
    chatbot: str | None = None
    knowledge_base: str | None = None

    def target(self, templates: Templates) -> str | None:
        """The URL this destination points at, or None when it is not configured."""
        if self.type == "url":
            return self.url
        if self.type in ("page", "chatbot", "knowledge_base"):
            ref = getattr(self, self.type)
            return getattr(templates, self.type).replace("{id}", ref) if ref else None
        return None

    def as_dict(self) -> dict[str, str | None]:
        return {"type": self.type, "url": self.url, "page": self.page, "chatbot": self.chatbot,
                "knowledge_base": self.knowledge_base}

    def compact(self) -> dict[str, str | None]:
        """Only the type and its companion field, as shown in `resolved`."""
        if self.type is None:
            return {"type": None}
        return {"type": self.type, self.type: getattr(self, self.type)}


@dataclass(frozen=True, slots=True)
class GroupRow:
    id: str
    version: int
    status: str | None
    destination: Destination
    url_params: Pairs = ()
    properties: Pairs = ()
    routing: str = ""  # rules, split and validity as JSON text (shared.edge_rows.routing_text); "" if none
    password_hash: str | None = None
    # hash() of the JSON it was decoded from (0 if built otherwise; `dataclasses.replace` resets it): a reader
    # tells that Redis still holds the same bytes without encoding the row again (edge/code_reads.py).
    source_hash: int = field(default=0, init=False, compare=False, repr=False)

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "v": self.version, "status": self.status,
                             "dest": self.destination.as_dict(), "params": self.url_params,
                             "props": self.properties, "routing": self.routing, "pw": self.password_hash})

    @classmethod
    def decode(cls, raw: bytes | str) -> GroupRow:
        d: dict[str, Any] = orjson.loads(raw)
        row = cls(d["id"], d["v"], d["status"], Destination(**d["dest"]),
                  _pairs(d["params"]), _pairs(d["props"]), d.get("routing", ""), d.get("pw"))
        object.__setattr__(row, "source_hash", hash(raw))
        return row


class CodeRow(msgspec.Struct, frozen=True, gc=False):
    """A msgspec struct, not a dataclass: decoded straight from Redis's JSON on every miss of the edge's local
    cache (0.65 µs against 2.6 µs through a dict and a frozen dataclass), and — without the collector's tracking
    (gc=False: it holds strings and tuples of strings only) — one object fewer per cached code for the cycle
    collector to traverse (edge/heap.py). The JSON member names are the short ones of `encode`."""

    id: str
    version: int = msgspec.field(name="v")
    org_id: str = msgspec.field(name="org")
    livemode: bool = msgspec.field(name="live")
    group_id: str | None = msgspec.field(name="group")
    status: str | None
    destination: Destination = msgspec.field(name="dest")
    url_params: Pairs = msgspec.field(default=(), name="params")
    properties: Pairs = msgspec.field(default=(), name="props")
    deleted: bool = False
    routing: str = ""  # rules, split and validity as JSON text (shared.edge_rows.routing_text); "" if none
    password_hash: str | None = msgspec.field(default=None, name="pw")
    limit_reached: bool = msgspec.field(default=False, name="limit")  # the ingest worker counted max_scans scans
    # As GroupRow's: hash() of the JSON it was decoded from (0 if built otherwise), set by `decode`; never encoded,
    # and left out of equality and hashing (below) as the dataclass's compare=False did. `msgspec.structs.replace`
    # copies it: a row changed that way (tests do) is not the row its hash says it was decoded from.
    source_hash: int = 0

    def __eq__(self, other: object) -> bool:
        return type(other) is CodeRow and _compared(self) == _compared(other)

    def __hash__(self) -> int:
        return hash(_compared(self))

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "v": self.version, "org": self.org_id, "live": self.livemode,
                             "group": self.group_id, "status": self.status,
                             "dest": self.destination.as_dict(), "params": self.url_params,
                             "props": self.properties, "deleted": self.deleted, "routing": self.routing,
                             "pw": self.password_hash, "limit": self.limit_reached})

    @classmethod
    def decode(cls, raw: bytes | str) -> CodeRow:
        """Raises ValueError (msgspec's errors) for JSON that is not a code row."""
        row = _CODE_ROW.decode(raw)
        force_setattr(row, "source_hash", hash(raw))
        # An organisation's and a group's id are shared by many codes: one string each for all the rows cached;
        # and most codes take their group's destination: one shared empty one.
        force_setattr(row, "org_id", sys.intern(row.org_id))
        if row.group_id:
            force_setattr(row, "group_id", sys.intern(row.group_id))
        if row.destination == NO_DESTINATION:
            force_setattr(row, "destination", NO_DESTINATION)
        return row


def _compared(row: CodeRow) -> tuple[object, ...]:
    return astuple(row)[:-1]  # every field but source_hash, the last


_CODE_ROW = msgspec.json.Decoder(CodeRow)
NO_DESTINATION = Destination()  # most codes take their group's: one shared object (a code row is decoded per miss)


def _pairs(items: list[list[str]]) -> Pairs:
    return tuple([(k, v) for k, v in items]) if items else ()
