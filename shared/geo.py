"""Country of an IP address from a MaxMind-format database (GeoLite2/GeoIP2 Country or City, or DB-IP).

Looked up in the edge, the only place that sees the raw IP; the worker receives just the country code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import maxminddb


def unreadable(path: Path) -> str | None:
    """Why `path` is no MaxMind-format database (a failed download, an HTML error page), or None."""
    try:
        maxminddb.open_database(str(path), maxminddb.MODE_AUTO).close()
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:  # an empty file: ValueError (mmap)
        return str(exc)
    return None


class CountryLookup:
    def __init__(self, path: Path) -> None:
        # MODE_AUTO memory-maps the file (or uses the C extension): lookups take microseconds, no I/O.
        self.reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)

    def country(self, ip: str) -> str | None:
        """The ISO 3166-1 alpha-2 code, or None for unknown, private or malformed addresses."""
        try:
            record: Any = self.reader.get(ip)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        for field in ("country", "registered_country"):
            code = (record.get(field) or {}).get("iso_code")
            if isinstance(code, str) and len(code) == 2:
                return code.upper()
        return None

    def close(self) -> None:
        self.reader.close()
