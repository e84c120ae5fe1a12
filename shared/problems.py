"""Domain errors in RFC 9457 shape (docs/api.md, "Errors").

Raised below the HTTP layer (services, rendering, jobs); the API maps them to problem+json in one place
(`control_plane.api.problems`). Nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired

import orjson
from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

PROBLEM_BASE = "https://scanroute.dev/problems/"
TITLES = {400: "Bad request", 401: "Unauthorized", 402: "Payment required", 403: "Forbidden",
          404: "Not found", 405: "Method not allowed", 409: "Conflict", 412: "Precondition failed",
          413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable content",
          429: "Too many requests", 500: "Internal server error", 503: "Service unavailable"}
SLUGS = {400: "bad-request", 401: "unauthorized", 402: "payment-required", 403: "forbidden", 404: "not-found",
         405: "method-not-allowed", 409: "conflict", 412: "precondition-failed", 413: "payload-too-large",
         415: "unsupported-media-type", 422: "validation", 429: "rate-limited", 500: "internal", 503: "unavailable"}


class FieldError(TypedDict):
    field: str  # dotted path of the field at fault, such as destination.url
    message: str


class ProblemDocument(TypedDict):
    """An RFC 9457 problem+json body, as every API error answers."""

    type: str
    title: str
    status: int
    detail: str
    errors: NotRequired[list[FieldError]]


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, type: str | None = None, title: str | None = None,
                 errors: Sequence[Mapping[str, str]] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = PROBLEM_BASE + (type or SLUGS.get(status, "error"))
        self.title = title or TITLES.get(status, "Error")
        self.errors = list(errors)
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """The problem+json document."""
        document: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                                    "detail": self.detail}
        if self.errors:
            document["errors"] = self.errors
        return orjson.dumps(document)


def validation_problem(errors: list[dict[str, str]], detail: str = "The request body is not valid.") -> Problem:
    return Problem(422, detail, errors=errors)


def field_error(field: str, message: str) -> Problem:
    return validation_problem([{"field": field, "message": message}], f"{field}: {message}")


def fields_error(message: str, *fields: str) -> PydanticCustomError:
    """What a model validator raises for a rule between fields: its 422 names each of `fields` (one entry in
    `errors` apiece), where a ValueError there would name the model itself, the field ""."""
    return PydanticCustomError("value_error", "{message}", {"message": message, "named_fields": fields})


def from_validation_error(exc: ValidationError, prefix: str = "") -> Problem:
    errors = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        named = (error.get("ctx") or {}).get("named_fields") or ("",)
        for name in named:
            field = ".".join(part for part in (location, name) if part)
            errors.append({"field": prefix + field, "message": message.removeprefix("Value error, ")})
    return validation_problem(errors)


def not_found(kind: str) -> Problem:
    """Another organisation's object, or the other mode's, is answered exactly as one that does not exist."""
    return Problem(404, f"No such {kind}.")
