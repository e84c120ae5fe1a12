"""Prefixed, unguessable object ids and short-URL slugs."""

from __future__ import annotations

import re
import secrets
import string

BASE62 = string.digits + string.ascii_letters
SLUG_LENGTH = 7
CUSTOM_SLUG = re.compile(r"[A-Za-z0-9_-]{3,64}")

# Paths the edge serves itself or that would confuse people reading a printed URL.
RESERVED_SLUGS = frozenset(
    {"healthz", "readyz", "metrics", "v1", "api", "docs", "openapi.json", "qr", "static", "admin",
     "favicon.ico", "robots.txt", "well-known", ".well-known", "login", "logout", "i"}
)


def new_id(prefix: str) -> str:
    """`prefix_` + 24 hex characters: 96 random bits."""
    return f"{prefix}_{secrets.token_hex(12)}"


def new_slug(length: int = SLUG_LENGTH) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def slug_problem(slug: str) -> str | None:
    """Why a custom slug cannot be used, or None when it can."""
    if not CUSTOM_SLUG.fullmatch(slug):
        return "must be 3-64 characters of A-Z, a-z, 0-9, _ and -"
    if slug.lower() in RESERVED_SLUGS:
        return f"'{slug}' is reserved"
    return None
