"""Rules, split, validity and password on codes and groups (docs/rules.md): columns, merge patch, objects.

Both `qr_codes` and `qr_groups` carry the same columns; the services of both call these functions so the
two resources behave alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal, NotRequired

import asyncpg
import orjson
from typing_extensions import TypedDict

from control_plane.services.destinations import DestinationPublic, merge_destination
from control_plane.services.schemas import RoutingFields
from shared.outbox import previous_attributes
from shared.passwords import hash_password
from shared.problems import field_error
from shared.rows import CodeRow, GroupRow
from shared.rules import Rule, Variant, dump_rules, dump_split
from shared.scan_limits import refresh_codes, refresh_group
from shared.times import timestamp
from shared.validity import window_error

COLUMNS = ("rules", "split", "valid_from", "valid_until", "max_scans", "expired_destination", "password_hash")
BODY_FIELDS = frozenset({"rules", "split", "valid_from", "valid_until", "max_scans", "expired_destination",
                         "password"})


class RoutingPublic(TypedDict):
    """The fields as objects show them: `password` is write-only, `has_password` says whether there is one."""

    rules: list[Rule] | None
    split: list[Variant] | None
    valid_from: str | None
    valid_until: str | None
    max_scans: int | None
    expired_destination: DestinationPublic | None
    has_password: bool


class ResolvedSplit(TypedDict):
    source: Literal["code", "group"]
    variants: list[Variant]


class ResolvedRoutingPublic(TypedDict):
    """Added to `resolved` only when the code or its group uses any of these fields (docs/rules.md)."""

    rules: NotRequired[list[dict[str, Any]]]  # each rule with its "source": "code" or "group", in order
    split: NotRequired[ResolvedSplit | None]
    valid_from: NotRequired[str | None]
    valid_until: NotRequired[str | None]
    max_scans: NotRequired[int | None]
    expired_destination: NotRequired[dict[str, str] | None]
    has_password: NotRequired[bool]


class Unchanged(Exception):
    """Raised inside a patch's savepoint when the patch changed nothing, to undo its writes."""


def changes_nothing(before: Mapping[str, Any], after: Mapping[str, Any], body: RoutingFields) -> bool:
    """Whether a merge patch of a code or group left it as it was (docs/api.md §4.1, "Versions"): every field
    its object shows is equal, and no new password was given (objects show only whether there is one)."""
    return not previous_attributes(before, after) and not body.password


def touched(body: RoutingFields) -> bool:
    return not BODY_FIELDS.isdisjoint(body.model_fields_set)


async def password_hash(body: RoutingFields) -> str | None:
    """The new hash, computed off the event loop (it costs ~50 ms of CPU on purpose)."""
    return await asyncio.to_thread(hash_password, body.password) if body.password else None


def routing_values(body: RoutingFields, current: asyncpg.Record | None, new_hash: str | None) -> list[Any]:
    """The COLUMNS' values after a create (`current` None) or a JSON Merge Patch, in COLUMNS order."""
    fields = body.model_fields_set
    values: dict[str, Any] = {name: current[name] if current is not None else None for name in COLUMNS}
    if "rules" in fields:
        values["rules"] = dump_rules(body.rules) if body.rules else None
    if "split" in fields:
        values["split"] = dump_split(body.split) if body.split else None
    for name in ("valid_from", "valid_until"):
        if name in fields:
            moment = getattr(body, name)
            # Kept to the whole second, as objects show them (docs/api.md §4.1): the edge closes a code at the
            # instant the API shows, and a patch to what is shown is no change.
            values[name] = moment.replace(microsecond=0) if moment is not None else None
    if "max_scans" in fields:
        values["max_scans"] = body.max_scans
    if "expired_destination" in fields:
        # A null type stores no expired destination at all, so a patch without one takes its companion's.
        merged = merge_destination(values["expired_destination"] or {}, body.expired_destination, True,
                                   "expired_destination", infer_type=True)
        values["expired_destination"] = ({k: v for k, v in merged.items() if v is not None}
                                         if merged["type"] is not None else None)
    if "password" in fields:
        values["password_hash"] = new_hash
    if message := window_error(values["valid_from"], values["valid_until"]):
        raise field_error("valid_until", message)
    return [values[name] for name in COLUMNS]


async def store(conn: asyncpg.Connection[Any], table: str, row_id: str, values: list[Any]) -> None:
    assignments = ", ".join(f"{name} = ${n}" for n, name in enumerate(COLUMNS, start=2))
    await conn.execute(f"UPDATE {table} SET {assignments} WHERE id = $1", row_id, *values)


def routing_object(row: asyncpg.Record) -> RoutingPublic:
    """The fields as objects show them: the password never, only whether there is one."""
    expired = row["expired_destination"]
    expired_destination: DestinationPublic | None = None
    if expired:
        expired_destination = {"type": expired["type"], "url": expired.get("url"), "page": expired.get("page"),
                               "chatbot": expired.get("chatbot"), "knowledge_base": expired.get("knowledge_base")}
    return {
        "rules": row["rules"], "split": row["split"], "valid_from": timestamp(row["valid_from"]),
        "valid_until": timestamp(row["valid_until"]), "max_scans": row["max_scans"],
        "expired_destination": expired_destination,
        "has_password": row["password_hash"] is not None,
    }


def resolved_routing(code: CodeRow, group: GroupRow | None) -> ResolvedRoutingPublic:
    """What `resolved` adds (docs/rules.md): the rules in the order the edge tries them, the split that
    applies, and the effective validity and password, each field from the code or else from its group.
    Nothing when neither uses any of them, so `resolved` keeps the contract's plain shape."""
    own = orjson.loads(code.routing) if code.routing else {}
    inherited = orjson.loads(group.routing) if group is not None and group.routing else {}
    inherits = group is not None and code.destination.type is None
    rules = [{"source": "code", **rule} for rule in own.get("rules") or []]
    split: ResolvedSplit | None = {"source": "code", "variants": own["split"]} if own.get("split") else None
    if inherits:
        rules += [{"source": "group", **rule} for rule in inherited.get("rules") or []]
        if split is None and inherited.get("split"):
            split = {"source": "group", "variants": inherited["split"]}
    def effective(name: str) -> Any:
        return own.get(name, inherited.get(name))

    has_password = code.password_hash is not None or (group is not None and group.password_hash is not None)
    validity = [effective(name) for name in ("valid_from", "valid_until", "max_scans", "expired_destination")]
    if not rules and split is None and not has_password and validity == [None] * 4:
        return {}
    return {"rules": rules, "split": split, "valid_from": validity[0], "valid_until": validity[1],
            "max_scans": validity[2], "expired_destination": validity[3], "has_password": has_password}


async def after_code_change(conn: asyncpg.Connection[Any], code_id: str, fields: set[str]) -> None:
    """Keeps the `max_scans` mark and the once-per-code `qr.expired` right after a code's change."""
    if "valid_until" in fields:
        await conn.execute("UPDATE qr_codes SET expired_notified_at = NULL WHERE id = $1", code_id)
    if "max_scans" in fields or "group_id" in fields:
        await refresh_codes(conn, [code_id], bumped=True)


async def after_group_change(conn: asyncpg.Connection[Any], group_id: str, fields: set[str]) -> list[str]:
    """The same for a group's inheriting codes; returns the codes whose edge rows changed (only those at a
    changed limit: a group change stays O(1) in the cache otherwise)."""
    if "valid_until" in fields:
        await conn.execute("UPDATE qr_codes SET expired_notified_at = NULL WHERE group_id = $1"
                           " AND valid_until IS NULL AND expired_notified_at IS NOT NULL", group_id)
    return await refresh_group(conn, group_id) if "max_scans" in fields else []
