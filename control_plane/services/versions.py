"""Optimistic concurrency for codes and groups: `If-Match: "<version>"` on PATCH and DELETE.

`version` is a column bumped by every UPDATE of the row (the edge cache orders its writes by it too).
"""

from __future__ import annotations

from collections.abc import Collection

import asyncpg

from shared.problems import Problem


def check_version(current: asyncpg.Record, expected: Collection[int] | None, kind: str) -> None:
    """412 unless the row (locked by the caller) is still at one of the `expected` versions."""
    if expected is not None and current["version"] not in expected:
        raise Problem(412, f"The {kind} is at version {current['version']}, not the one in If-Match: it changed "
                      "since you read it. Read it again, then retry.", type="version-mismatch")
