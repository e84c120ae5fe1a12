"""Request parsing and response helpers shared by every route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from control_plane.services.listing import Listing
from shared.problems import Problem, from_validation_error

MAX_DEPTH = 32  # JSON nesting accepted in a body; deeper is a 400, checked without recursion
Model = TypeVar("Model", bound=BaseModel)
# On a response that holds a secret shown once (a new API key, a webhook signing secret): no cache keeps it,
# a browser's or a proxy's (docs/api.md §2.4). The idempotency middleware replays it with the header.
SECRET_SHOWN_ONCE = {"Cache-Control": "no-store"}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, default=_default), status, headers, "application/json")


def _default(value: Any) -> Any:
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def read_body(request: Request) -> bytes:
    # BodyLimitMiddleware has already refused (413) anything over the limit while it streamed in.
    return await request.body()


async def parse_body(request: Request, model: type[Model], immutable: tuple[str, ...] = ()) -> Model:
    body = await read_body(request)
    if not body.strip():
        raise Problem(422, "Send a JSON object as the body.", errors=[{"field": "", "message": "a body is required"}])
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"The body is not valid JSON: {exc}.", type="malformed-json") from None
    if not isinstance(data, dict):
        raise Problem(422, "The body must be a JSON object.", errors=[{"field": "", "message": "must be an object"}])
    depth, nul_at = _shape(data)
    if depth > MAX_DEPTH:
        raise Problem(400, f"The body is nested deeper than {MAX_DEPTH} levels.", type="malformed-json")
    if nul_at is not None:
        raise Problem(422, "Text must not contain NUL characters.",
                      errors=[{"field": nul_at, "message": "must not contain NUL (\\u0000) characters"}])
    if fixed := [name for name in immutable if name in data]:
        raise Problem(422, f"{', '.join(fixed)} cannot change after creation.",
                      errors=[{"field": name, "message": "cannot change after creation"} for name in fixed])
    try:
        # Strict, from the JSON itself: a number is not a string, a date-time, or a boolean ("1", 1 and "true"
        # are refused where the schema says integer or boolean), while strings still give UUIDs and RFC 3339
        # date-times (shared.rules.Moment). Dashboard forms, whose fields are all text, are parsed apart.
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _shape(document: Any) -> tuple[int, str | None]:
    """(nesting depth, the dotted path of the first string or key in document order that holds NUL, or None),
    walked with a stack: no recursion limit to hit. A path names its field as other 422s do (`tags.1`)."""
    deepest, nul_at = 0, None
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(document, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if nul_at is None and "\x00" in value:
                nul_at = ".".join(path)
        elif isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            children: list[tuple[Any, int, tuple[str, ...]]] = []
            if isinstance(value, dict):
                for key, child in value.items():
                    children += [(key, depth + 1, (*path, key)), (child, depth + 1, (*path, key))]
            else:
                children = [(child, depth + 1, (*path, str(n))) for n, child in enumerate(value)]
            stack.extend(reversed(children))  # popped in document order: the first NUL is the one named
    return deepest, nul_at


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise Problem(422, f"`{name}` must be an integer from {low} to {high}.",
                      errors=[{"field": name, "message": f"must be an integer from {low} to {high}"}])
    return value


def if_match(request: Request) -> frozenset[int] | None:
    """The versions `If-Match` accepts (`"3"`, `W/"3"`, a list of them); None when absent or `*`."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    tags = [tag.strip().removeprefix("W/").strip('"') for tag in raw.split(",")]
    # A tag that is no version of ours can match nothing: 412, as for a version that moved on.
    return frozenset(int(tag) for tag in tags if tag.isascii() and tag.isdigit() and len(tag) <= 18)


def versioned_response(obj: Mapping[str, Any], status: int = 200) -> Response:
    """A code or group, with its version as the entity tag that `If-Match` takes back."""
    return json_response(obj, status, {"ETag": f'"{obj["version"]}"'})


def parse_query(request: Request, model: type[Model]) -> Model:
    """The query string as `model`; a value it refuses is a 422 naming the parameter."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def list_response(listing: Listing[Any]) -> Response:
    return json_response(listing.envelope())
