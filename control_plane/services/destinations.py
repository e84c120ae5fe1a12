"""Destinations: merge-patched as a whole object, then checked for the companion field of their type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from typing_extensions import TypedDict

from control_plane.services.schemas import DestinationIn, DestinationType
from shared.problems import field_error

FIELDS = ("type", "url", "page", "chatbot", "knowledge_base")
Destination = dict[str, str | None]


class DestinationPublic(TypedDict):
    """`type` null = inherit from the group; the companion field of the type holds the target."""

    type: DestinationType | None
    url: str | None
    page: str | None
    chatbot: str | None
    knowledge_base: str | None


def destination_object(row: asyncpg.Record) -> DestinationPublic:
    return {"type": row["destination_type"], "url": row["destination_url"], "page": row["destination_page"],
            "chatbot": row["destination_chatbot"], "knowledge_base": row["destination_knowledge_base"]}


def merge_destination(current: Mapping[str, Any], patch: DestinationIn | None, present: bool,
                      field: str = "destination") -> Destination:
    """RFC 7396 on the destination object: `null` clears it all, absent keys are kept."""
    merged: Destination = {name: current.get(name) for name in FIELDS}
    if present and patch is None:
        merged = dict.fromkeys(FIELDS)
    elif patch is not None:
        for name in patch.model_fields_set:
            value = getattr(patch, name)
            merged[name] = None if value is None else str(value)
    kind = merged["type"]
    if kind is not None and not merged[kind]:
        raise field_error(f"{field}.{kind}", f"is required when {field}.type is '{kind}'")
    return merged


def destination_columns(destination: Destination) -> tuple[str | None, ...]:
    return tuple(destination[name] for name in FIELDS)
