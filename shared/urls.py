"""Destination URL validation, shared by every writer so that the edge only ever sees clean URLs."""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit, urlunsplit

MAX_URL_LENGTH = 8000
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


class InvalidURL(ValueError):
    pass


def normalize_destination_url(url: str) -> str:
    """An absolute http(s) URL with a host, no whitespace or control characters, ASCII only.

    Non-ASCII characters in the path, query and fragment are percent-encoded (UTF-8) and an
    internationalised host is IDNA-encoded, so the stored text can go into a Location header as is.
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidURL(f"must be at most {MAX_URL_LENGTH} characters")
    if _FORBIDDEN.search(url):
        raise InvalidURL("must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidURL("must be an absolute http or https URL")
    host = parts.hostname
    if not host:
        raise InvalidURL("must have a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("must not contain credentials")
    try:
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise InvalidURL("has an invalid international host name") from None
    if not re.fullmatch(r"[A-Za-z0-9.\-_\[\]:]+", ascii_host):
        raise InvalidURL("has an invalid host")
    netloc = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    if port is not None:
        netloc += f":{port}"
    path, query, fragment = (quote(p, safe=_SAFE) for p in (parts.path, parts.query, parts.fragment))
    normalized = urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))
    if len(normalized) > MAX_URL_LENGTH:
        raise InvalidURL(f"must be at most {MAX_URL_LENGTH} characters once encoded")
    return normalized
