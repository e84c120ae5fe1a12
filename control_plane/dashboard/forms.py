"""HTML form fields to the API's request models and back, so both meet the same validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.problems import Problem, field_error, from_validation_error

M = TypeVar("M", bound=BaseModel)
MAX_DIGITS = 18  # more than any count, weight or version needs; int() refuses over 4,300 digits


def validated(model: type[M], data: dict[str, Any]) -> M:
    """The API's model of `data`; its validation errors become the same 422 problem the API answers."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def field_errors(problem: Problem, inputs: Mapping[str, str] | None = None) -> dict[str, str]:
    """Messages by field (`destination.url`, …); a problem about no field in particular under "". `inputs`
    names the form input of a field whose path in the API's request is not the input's name (the export
    form's `template` is `sheet.template` in the request); two fields on one input show both messages."""
    errors: dict[str, str] = {}
    for error in problem.errors:
        if "field" not in error:
            continue
        name = (inputs or {}).get(error["field"], error["field"])
        before = errors.get(name)
        errors[name] = error["message"] if before in (None, error["message"]) else f"{before}; {error['message']}"
    return errors or {"": problem.detail}


def parse_pairs(text: str, field: str) -> dict[str, str]:
    """`key=value` lines (URL params, properties) as a mapping; blank lines are skipped."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise field_error(field, f"line {number} is not key=value")
        pairs[key.strip()] = value.strip()
    return pairs


def destination_and_pairs(form: Mapping[str, str]) -> dict[str, Any]:
    """The fields the code and group forms share, as the API's JSON: `destination` (a URL, or None when the
    field is empty), `url_params` and `properties` from their `key=value` lines. One 422 names every pair
    field at fault."""
    url = optional(form.get("destination_url"))
    body: dict[str, Any] = {
        "destination": {"type": "url", "url": url, "page": None, "chatbot": None, "knowledge_base": None}
        if url else None}
    errors: dict[str, str] = {}
    for field in ("url_params", "properties"):
        try:
            body[field] = parse_pairs(form.get(field, ""), field)
        except Problem as problem:
            errors.update(field_errors(problem))
    if errors:
        raise Problem(422, "The form has errors.", errors=[{"field": k, "message": v} for k, v in errors.items()])
    return body


def drop_unchanged_url(body: dict[str, Any], before: Mapping[str, Any]) -> None:
    """The edit forms always send the destination: leave it out of the update when it is the stored URL, which
    was checked when it was written and is never refused for a rule made since (docs/api.md §2.1) — a code
    whose URL an earlier release took stays editable."""
    sent, stored = body.get("destination"), before.get("destination") or {}
    if sent is not None and stored.get("type") == "url" and sent["url"] == stored.get("url"):
        del body["destination"]


def pairs_text(pairs: dict[str, str] | None) -> str:
    return "\n".join(f"{k}={v}" for k, v in (pairs or {}).items())


def pairs_patch(before: dict[str, str] | None, after: dict[str, str]) -> dict[str, str | None]:
    """A JSON Merge Patch that turns `before` into `after`: removed keys are set to null."""
    return {**{k: None for k in (before or {}) if k not in after}, **after}


def optional(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def whole_number(text: str) -> int | None:
    """A number typed in a form or query string, or None when `text` is not one. ASCII digits only:
    `str.isdigit` also takes "²", which int() refuses (a 500 where the form should say what is wrong)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS):
        return None
    return int(text)


def number_field(text: str) -> int | str | None:
    """A number field of a form for the API's model: the number, None when empty, else the text as typed, so
    that the model refuses it with its own message next to the field."""
    text = text.strip()
    number = whole_number(text)
    return number if number is not None else text or None


def form_version(form: Mapping[str, str]) -> list[int] | None:
    """The version a form was opened at, for `if_match`: a change made meanwhile by someone else is not
    overwritten (412)."""
    value = form.get("version", "")
    if not value:
        return None
    version = whole_number(value)
    if version is None:
        raise Problem(400, "The form is damaged (its version is not a number). Reload the page and try again.")
    return [version]
