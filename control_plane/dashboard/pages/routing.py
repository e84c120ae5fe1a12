"""The rules and split editor of a group's and a code's page (docs/rules.md, docs/dashboard.md).

Rules and split are whole lists in the API (a PATCH replaces them), so every action here — add, edit,
move, delete a rule; save or remove the split — reads the object, changes its list and sends the whole
list back through the same `update_group`/`update_code` as `PATCH /v1/…`, with the version the page was
opened at (a change made meanwhile answers 412 instead of being overwritten). The API's models validate
the result, and their messages are shown next to the field of the form they concern.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from control_plane.dashboard.forms import field_errors, form_version, number_field, whole_number
from control_plane.dashboard.visit import Handler, Visit, page
from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from shared.problems import Problem
from shared.rules import MAX_RULES, MAX_VARIANTS, WEEKDAYS
from shared.user_agents import BROWSERS, DEVICES

TEXT_LISTS = ("language", "country", "ip")  # conditions typed as a list of values in one text box
CHECKBOXES = {"device": DEVICES, "browser": BROWSERS, "weekday": WEEKDAYS}
NOTICES = {"rule-added": "Rule added. The next scan follows it.", "rule-saved": "Rule saved.",
           "rule-moved": "Rule moved.", "rule-deleted": "Rule deleted.", "split-saved": "Split saved.",
           "split-removed": "Split removed."}
SPLIT_ROWS_FREE = 2  # empty rows offered after the variants there are


@dataclass(slots=True)
class Failed:
    """A form of the editor that was refused: which one, what was typed, and the errors by input name."""

    form: str  # "rule-3", "rule-new" or "split"
    values: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Kind:
    """What differs between a group and a code for the editor."""

    path: str  # "groups" or "codes"
    noun: str
    get: Callable[[ServiceContext, ApiKey, str], Awaitable[Mapping[str, Any]]]
    update: Callable[[ServiceContext, ApiKey, str, dict[str, Any], list[int] | None], Awaitable[Any]]  # if_match
    # Renders the object's page again with the editor's refused form (status of the problem).
    detail: Callable[[Visit, Mapping[str, Any], Failed, int], Awaitable[Response]]


# Stored rule → the editor's form values, and back.

def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", text) if w]


def rule_values(rule: Mapping[str, Any]) -> dict[str, Any]:
    conditions = rule.get("if", {})
    values: dict[str, Any] = {name: list(conditions.get(name) or []) for name in CHECKBOXES}
    values["language"] = ", ".join(conditions.get("language") or [])
    values["country"] = ", ".join(conditions.get("country") or [])
    values["ip"] = "\n".join(conditions.get("ip") or [])
    values["query"] = "\n".join(k if v is None else f"{k}={v}" for k, v in (conditions.get("query") or {}).items())
    values["after"], values["before"] = conditions.get("after") or "", conditions.get("before") or ""
    window = conditions.get("time") or {}
    values["time_from"], values["time_to"] = window.get("from", ""), window.get("to", "")
    values["timezone"] = conditions.get("timezone") or ""
    destination = rule.get("destination") or {}
    values["destination_url"] = destination.get("url") or ""
    values["destination_other"] = destination.get("type") if destination.get("type") not in (None, "url") else ""
    return values


def _form_rule(visit: Visit, kept: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rule a rule form describes, as the API's JSON, and the values to show again if it is refused.
    A destination other than a URL (set through the API) is kept while the URL box is left empty."""
    form = visit.form
    values: dict[str, Any] = {name: visit.values(name) for name in CHECKBOXES}
    for name in (*TEXT_LISTS, "query", "after", "before", "time_from", "time_to", "timezone", "destination_url"):
        values[name] = form.get(name, "").strip()
    conditions: dict[str, Any] = {name: values[name] for name in CHECKBOXES if values[name]}
    for name in TEXT_LISTS:
        if values[name]:
            conditions[name] = _words(values[name])
    if values["query"]:
        conditions["query"] = {k.strip(): (v.strip() if sep else None) for k, sep, v in
                               (line.partition("=") for line in values["query"].splitlines() if line.strip())}
    for name in ("after", "before", "timezone"):
        if values[name]:
            conditions[name] = values[name]
    if values["time_from"] or values["time_to"]:
        conditions["time"] = {"from": values["time_from"], "to": values["time_to"]}
    destination: dict[str, Any] = {"type": "url", "url": values["destination_url"] or None}
    if not values["destination_url"] and kept and (kept.get("destination") or {}).get("type") not in (None, "url"):
        destination = dict(kept["destination"])
        values["destination_other"] = destination["type"]
    return {"if": conditions, "destination": destination}, values


# The API's error fields (`rules.2.if.country.1`) → the input they concern in the form of rule 2.

_INPUT_OF = {"time.from": "time_from", "time.to": "time_to", "time": "time_from", "destination.url": "destination_url",
             "destination": "destination_url", "destination.type": "destination_url"}


def _rule_errors(problem: Problem, index: int, values: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for where, message in field_errors(problem).items():
        prefix = f"rules.{index}."
        if not where.startswith(prefix) and where != f"rules.{index}":
            errors.setdefault("", f"{where}: {message}" if where else message)
            continue
        rest = where.removeprefix(prefix).removeprefix(f"rules.{index}").removeprefix("if").lstrip(".")
        parts = rest.split(".")
        item = whole_number(parts[1]) if len(parts) == 2 and parts[0] in (*TEXT_LISTS, *CHECKBOXES) else None
        if item is not None:
            given = _words(values.get(parts[0], "")) if parts[0] in TEXT_LISTS else values.get(parts[0], [])
            if item < len(given):
                message = f"“{given[item]}” {message}"
            rest = parts[0]
        elif parts[0] == "query":
            rest = "query"
        name = _INPUT_OF.get(rest, rest)
        errors[name if name else ""] = message
    return errors


def _split_errors(problem: Problem, rows: list[int]) -> dict[str, str]:
    """`split.1.weight` → the input of the form's row that became variant 1 (empty rows are left out)."""
    errors: dict[str, str] = {}
    for where, message in field_errors(problem).items():
        parts = where.split(".")
        variant = whole_number(parts[1]) if len(parts) >= 3 and parts[0] == "split" else None
        if variant is not None and variant < len(rows):
            name = "weight" if parts[2] == "weight" else "url"
            errors[f"{name}_{rows[variant]}"] = message
        else:
            errors[""] = f"{where}: {message}" if where and where != "split" else message
    return errors


# What the page shows.

def _list(values: list[str]) -> str:
    return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]


def describe(rule: Mapping[str, Any]) -> list[str]:
    """A rule's conditions in words, one entry each, for the list of rules."""
    conditions, said = rule.get("if", {}), []
    for name in ("device", "browser", "language", "country", "weekday"):
        if conditions.get(name):
            said.append(f"{name} is {_list(conditions[name])}")
    if conditions.get("time"):
        said.append(f"time {conditions['time']['from']}–{conditions['time']['to']}")
    if conditions.get("timezone"):
        said.append(f"in {conditions['timezone']}")
    if conditions.get("query"):
        said.append("query has " + ", ".join(k if v is None else f"{k}={v}" for k, v in conditions["query"].items()))
    if conditions.get("ip"):
        said.append(f"address in {_list(conditions['ip'])}")
    if conditions.get("after"):
        said.append(f"from {conditions['after']}")
    if conditions.get("before"):
        said.append(f"before {conditions['before']}")
    return said


def destination_text(destination: Mapping[str, Any] | None) -> str:
    destination = destination or {}
    kind = destination.get("type")
    return str(destination.get("url")) if kind == "url" else f"{kind} {destination.get(kind)}" if kind else "—"


def editor(kind: str, obj: Mapping[str, Any], failed: Failed | None = None) -> dict[str, Any]:
    """The template context of the editor (`routing.html`) for a group or code object."""
    rules = list(obj.get("rules") or [])
    split = list(obj.get("split") or [])
    rows = [{"weight": str(v["weight"]), "url": (v["destination"] or {}).get("url") or "",
             "other": destination_text(v["destination"]) if v["destination"]["type"] != "url" else ""}
            for v in split]
    rows += [{"weight": "", "url": "", "other": ""}] * min(SPLIT_ROWS_FREE, MAX_VARIANTS - len(rows))
    if failed is not None and failed.form == "split":
        rows = failed.values["rows"]
    return {
        "base": f"/app/{kind}/{obj['id']}", "version": obj["version"], "failed": failed,
        "rules": [{"number": n, "said": describe(r), "to": destination_text(r.get("destination")),
                   "values": failed.values if failed and failed.form == f"rule-{n}" else rule_values(r)}
                  for n, r in enumerate(rules, 1)],
        "new_values": failed.values if failed and failed.form == "rule-new" else rule_values({}),
        "rows": rows, "has_split": bool(split), "max_rules": MAX_RULES, "checkboxes": CHECKBOXES,
    }


# The actions.

STALE = "Someone changed this {noun} since you opened the page: reload to see their change, then try again."


Change = Callable[[list[Any], list[Any]], tuple[dict[str, Any], str]]  # (rules, split) → (PATCH body, notice)


async def _change(kind: Kind, visit: Visit, form: str, change: Change, values: dict[str, Any],
                  errors_of: Callable[[Problem], dict[str, str]]) -> Response:
    """Reads the object, applies `change` to its lists, and stores the result with the page's version."""
    ctx, key, obj_id = visit.stores.services, visit.principal, visit.request.path_params["obj_id"]
    obj = await kind.get(ctx, key, obj_id)
    try:
        body, done = change(list(obj.get("rules") or []), list(obj.get("split") or []))
        await kind.update(ctx, key, obj_id, body, form_version(visit.form))
    except Problem as problem:
        errors = {"": STALE.format(noun=kind.noun)} if problem.status == 412 else errors_of(problem)
        return await kind.detail(visit, obj, Failed(form, values, errors), problem.status)
    return RedirectResponse(f"/app/{kind.path}/{obj_id}?done={done}#rules", 303)


def _index(visit: Visit, rules: list[Any]) -> int:
    # `{number}` is text, not Starlette's `:int`: that calls int() while routing, and int() of over 4,300
    # digits raises, a 500 before any page runs.
    number = whole_number(visit.request.path_params["number"])
    if number is None or not 1 <= number <= len(rules):
        raise Problem(404, "No such rule: the rules changed since you opened the page. Reload it.")
    return number - 1


def _add_rule(kind: Kind) -> Handler:
    async def add_rule(visit: Visit) -> Response:
        rule, values = _form_rule(visit, None)
        at = [0]  # where the new rule went: its errors name that index

        def change(rules: list[Any], _: list[Any]) -> tuple[dict[str, Any], str]:
            at[0] = len(rules)
            return {"rules": [*rules, rule]}, "rule-added"

        return await _change(kind, visit, "rule-new", change, values, lambda p: _rule_errors(p, at[0], values))

    return add_rule


def _save_rule(kind: Kind) -> Handler:
    async def save_rule(visit: Visit) -> Response:
        obj = await kind.get(visit.stores.services, visit.principal, visit.request.path_params["obj_id"])
        index = _index(visit, list(obj.get("rules") or []))
        rule, values = _form_rule(visit, (obj.get("rules") or [])[index])

        def change(rules: list[Any], _: list[Any]) -> tuple[dict[str, Any], str]:
            if index >= len(rules):
                raise Problem(404, "No such rule: the rules changed since you opened the page. Reload it.")
            return {"rules": [*rules[:index], rule, *rules[index + 1:]]}, "rule-saved"

        return await _change(kind, visit, f"rule-{index + 1}", change, values,
                             lambda p: _rule_errors(p, index, values))

    return save_rule


def _move_rule(kind: Kind) -> Handler:
    async def move_rule(visit: Visit) -> Response:
        def change(rules: list[Any], _: list[Any]) -> tuple[dict[str, Any], str]:
            index = _index(visit, rules)
            other = index - 1 if visit.form.get("to") == "up" else index + 1
            if 0 <= other < len(rules):
                rules[index], rules[other] = rules[other], rules[index]
            return {"rules": rules}, "rule-moved"

        return await _change(kind, visit, "rules", change, {}, field_errors)

    return move_rule


def _delete_rule(kind: Kind) -> Handler:
    async def delete_rule(visit: Visit) -> Response:
        def change(rules: list[Any], _: list[Any]) -> tuple[dict[str, Any], str]:
            index = _index(visit, rules)
            return {"rules": rules[:index] + rules[index + 1:]}, "rule-deleted"

        return await _change(kind, visit, "rules", change, {}, field_errors)

    return delete_rule


def _split_rows(visit: Visit) -> list[dict[str, str]]:
    return [{"weight": visit.form.get(f"weight_{n}", "").strip(), "url": visit.form.get(f"url_{n}", "").strip(),
             "other": visit.form.get(f"other_{n}", "")}
            for n in range(MAX_VARIANTS) if f"weight_{n}" in visit.form or f"url_{n}" in visit.form]


def _variants(rows: list[dict[str, str]], split: list[Any], used: list[int]) -> list[dict[str, Any]]:
    """The split the form's rows describe; `used` gets the row of each variant. Empty rows are skipped, and a
    row left without a URL keeps the variant's destination if that is not a URL (set through the API)."""
    variants = []
    for n, row in enumerate(rows):
        if not row["weight"] and not row["url"]:
            continue
        destination: dict[str, Any] = {"type": "url", "url": row["url"] or None}
        if not row["url"] and n < len(split) and split[n]["destination"]["type"] != "url":
            destination = split[n]["destination"]
        variants.append({"weight": number_field(row["weight"]), "destination": destination})
        used.append(n)
    return variants


def _save_split(kind: Kind) -> Handler:
    async def save_split(visit: Visit) -> Response:
        rows, used = _split_rows(visit), list[int]()
        remove = visit.form.get("remove") == "1"

        def change(_: list[Any], split: list[Any]) -> tuple[dict[str, Any], str]:
            variants = [] if remove else _variants(rows, split, used)
            return {"split": variants or None}, "split-saved" if variants else "split-removed"

        return await _change(kind, visit, "split", change, {"rows": rows}, lambda p: _split_errors(p, used))

    return save_split


def routes(kind: Kind) -> list[Route]:
    base = f"/{kind.path}/{{obj_id}}"
    return [
        Route(f"{base}/rules", page("qr:write")(_add_rule(kind)), methods=["POST"]),
        Route(f"{base}/rules/{{number}}", page("qr:write")(_save_rule(kind)), methods=["POST"]),
        Route(f"{base}/rules/{{number}}/move", page("qr:write")(_move_rule(kind)), methods=["POST"]),
        Route(f"{base}/rules/{{number}}/delete", page("qr:write")(_delete_rule(kind)), methods=["POST"]),
        Route(f"{base}/split", page("qr:write")(_save_split(kind)), methods=["POST"]),
    ]


def notice(visit: Visit) -> str:
    return NOTICES.get(visit.request.query_params.get("done", ""), "")

