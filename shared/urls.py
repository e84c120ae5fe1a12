"""Destination URL validation, shared by every writer so that the edge only ever sees clean URLs."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import quote, urlsplit, urlunsplit

from shared.hostnames import InvalidHostname, canonical_hostname, stored_hostname

MAX_URL_LENGTH = 8000
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


class InvalidURL(ValueError):
    pass


def url_host(host: str, *, stored: bool = False) -> str:
    """A URL's host (`urlsplit(…).hostname`) as it is sent: an IP literal as is, a name in lower-case A-labels
    (IDNA 2008 + UTS #46), a trailing dot kept; InvalidURL for a name that is none (`xn--zz.example`).

    `stored`: the URL was checked when it was written, perhaps by an earlier release under other rules, and is
    being used now: its name is encoded, not judged again (shared.hostnames.stored_hostname, docs/webhooks.md).
    """
    if ":" in host:  # urlsplit took it from brackets
        # No zone ("fe80::1%25eth0"): it names an interface of whoever follows the URL. IPv6Address takes one.
        if "%" in host:
            raise InvalidURL("has an IPv6 zone (%…), which names a network interface of whoever follows it")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidURL("has an invalid host") from None
        return host
    name = host[:-1] if host.endswith(".") else host
    try:
        return (stored_hostname(name) if stored else canonical_hostname(name, underscores=True)) + host[len(name):]
    except InvalidHostname as exc:
        raise InvalidURL(f"has an invalid host name: {exc}") from None


def normalize_destination_url(url: str) -> str:
    """An absolute http(s) URL with a host, no whitespace or control characters, ASCII only.

    Non-ASCII characters in the path, query and fragment are percent-encoded (UTF-8) and an
    internationalised host is IDNA-encoded (shared.hostnames), so the stored text can go into a Location
    header as is.
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
    ascii_host = url_host(host)
    netloc = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    if port is not None:
        netloc += f":{port}"
    path, query, fragment = (quote(p, safe=_SAFE) for p in (parts.path, parts.query, parts.fragment))
    normalized = urlunsplit((parts.scheme.lower(), netloc, path, query, fragment))
    if len(normalized) > MAX_URL_LENGTH:
        raise InvalidURL(f"must be at most {MAX_URL_LENGTH} characters once encoded")
    return normalized
