"""The edge rows: what the edge needs of a code and of a group, cached in Redis as JSON.

Codes and groups are cached separately and joined at scan time, so a group change rewrites one key
whatever its number of codes. Every row carries the version of its PostgreSQL row; the write-through
never replaces a newer version with an older one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.settings import Templates

DESTINATION_TYPES = ("url", "page", "chatbot", "knowledge_base")
STATUSES = ("active", "inactive", "archived")
Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Destination:
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


@dataclass(frozen=True, slots=True)
class CodeRow:
    id: str
    version: int
    org_id: str
    livemode: bool
    group_id: str | None
    status: str | None
    destination: Destination
    url_params: Pairs = ()
    properties: Pairs = ()
    deleted: bool = False
    routing: str = ""  # rules, split and validity as JSON text (shared.edge_rows.routing_text); "" if none
    password_hash: str | None = None
    limit_reached: bool = False  # the ingest worker counted max_scans human scans
    source_hash: int = field(default=0, init=False, compare=False, repr=False)  # as GroupRow's

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "v": self.version, "org": self.org_id, "live": self.livemode,
                             "group": self.group_id, "status": self.status,
                             "dest": self.destination.as_dict(), "params": self.url_params,
                             "props": self.properties, "deleted": self.deleted, "routing": self.routing,
                             "pw": self.password_hash, "limit": self.limit_reached})

    @classmethod
    def decode(cls, raw: bytes | str) -> CodeRow:
        d: dict[str, Any] = orjson.loads(raw)
        group = d["group"]
        # An organisation's and a group's id are shared by many codes: one string each for all the rows cached.
        row = cls(d["id"], d["v"], sys.intern(d["org"]), d["live"], sys.intern(group) if group else group, d["status"],
                  _destination(d["dest"]), _pairs(d["params"]), _pairs(d["props"]), d["deleted"],
                  d.get("routing", ""), d.get("pw"), d.get("limit", False))
        object.__setattr__(row, "source_hash", hash(raw))
        return row


NO_DESTINATION = Destination()  # most codes take their group's: one shared object (a code row is decoded per miss)


def _destination(fields: dict[str, str | None]) -> Destination:
    return Destination(**fields) if any(fields.values()) else NO_DESTINATION


def _pairs(items: list[list[str]]) -> Pairs:
    return tuple([(k, v) for k, v in items]) if items else ()
