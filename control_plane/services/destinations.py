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


def _inferred_type(merged: Destination, field: str) -> str | None:
    """The type of a destination given without one: the single companion field set (docs/api.md §2.1, "url is
    the only field needed"); none set leaves it inheriting; two or more are ambiguous (422), never a stored
    destination that silently goes nowhere."""
    given = [name for name in FIELDS[1:] if merged[name]]
    if len(given) > 1:
        raise field_error(f"{field}.type", f"is required when more than one of {', '.join(given)} is given")
    return given[0] if given else None


def merge_destination(current: Mapping[str, Any], patch: DestinationIn | None, present: bool,
                      field: str = "destination", *, infer_type: bool = False) -> Destination:
    """RFC 7396 on the destination object: `null` clears it all, absent keys are kept. `infer_type` (a new
    destination, or one replacing none): a patch without `type` takes it from its single companion field."""
    merged: Destination = {name: current.get(name) for name in FIELDS}
    if present and patch is None:
        merged = dict.fromkeys(FIELDS)
    elif patch is not None:
        # A model's non-null default is a value it states (the upsert's `type` is "url"), like a field sent.
        for name in patch.model_fields_set | {name for name in FIELDS if getattr(patch, name) is not None}:
            value = getattr(patch, name)
            merged[name] = None if value is None else str(value)
        if infer_type and merged["type"] is None and "type" not in patch.model_fields_set:
            merged["type"] = _inferred_type(merged, field)
    kind = merged["type"]
    if kind is not None and not merged[kind]:
        raise field_error(f"{field}.{kind}", f"is required when {field}.type is '{kind}'")
    return merged


def destination_columns(destination: Destination) -> tuple[str | None, ...]:
    return tuple(destination[name] for name in FIELDS)
