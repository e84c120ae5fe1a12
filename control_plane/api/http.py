"""Request parsing and response helpers shared by every route."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from control_plane.services.listing import Listing
from shared.problems import Problem, from_validation_error

MAX_BODY = 1 << 20
Model = TypeVar("Model", bound=BaseModel)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data, default=_default), status, headers, "application/json")


def _default(value: Any) -> Any:
    raise TypeError(f"cannot serialise {type(value).__name__}")


async def read_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Problem(413, f"The body is larger than {MAX_BODY} bytes.")
    return body


async def parse_body(request: Request, model: type[Model], immutable: tuple[str, ...] = ()) -> Model:
    body = await read_body(request)
    try:
        data = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"The body is not valid JSON: {exc}.", type="malformed-json") from None
    if not isinstance(data, dict):
        raise Problem(422, "The body must be a JSON object.", errors=[{"field": "", "message": "must be an object"}])
    if _has_nul(data):
        raise Problem(422, "Text must not contain NUL characters.",
                      errors=[{"field": "", "message": "must not contain NUL (\\u0000) characters"}])
    if fixed := [name for name in immutable if name in data]:
        raise Problem(422, f"{', '.join(fixed)} cannot change after creation.",
                      errors=[{"field": name, "message": "cannot change after creation"} for name in fixed])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


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


def parse_query(request: Request, model: type[Model]) -> Model:
    """The query string as `model`; a value it refuses is a 422 naming the parameter."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def list_response(listing: Listing[Any]) -> Response:
    return json_response(listing.envelope())
