"""Migration 0015 folds the rollups of a running installation into `scan_hours` without losing a count."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from control_plane.cli.migrate import migration_files
from tests.conftest import _admin, with_database

HOUR = datetime(2026, 4, 1, 10, tzinfo=UTC)
ROLLUP = """INSERT INTO scan_rollups (code_id, group_id, org_id, livemode, hour, country, device_type, os, browser,
    scan_method, scanner_app, outcome, rule, variant, scans) VALUES ($1, $2, 'org_a', true, $3, $4, 'mobile', 'iOS',
    'Mobile Safari', $5, $6, 'redirected', $7, -1, $8)"""


@pytest.fixture
async def before_0015() -> AsyncIterator[asyncpg.Connection[Any]]:
    """An empty database migrated up to, not including, 0015."""
    name = f"scanroute_m_{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(with_database(os.environ["DATABASE_URL"], name), timeout=10)
    try:
        for version, sql in migration_files():
            if version >= "0015":
                break
            await conn.execute(sql)
        yield conn
    finally:
        await conn.close()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_rollups_become_packed_hourly_counts(before_0015: asyncpg.Connection[Any]) -> None:
    conn = before_0015
    await conn.executemany(ROLLUP, [
        ("qr_a", "grp_a", HOUR, "FR", "camera", "iOS Camera", -1, 3),
        ("qr_a", "grp_a", HOUR, "", "manual_entry", "", 2, 2),
        ("qr_a", "grp_a", HOUR.replace(hour=11), "DE", "camera", "", -1, 1),
    ])
    empty = bytes(1024)
    await conn.execute("INSERT INTO scan_sketches (code_id, group_id, org_id, livemode, hour, visitors, ips)"
                       " VALUES ('qr_a', 'grp_a', 'org_a', true, $1, $2, $2)", HOUR, empty)  # the 11:00 one is missing
    await conn.execute(dict(migration_files())["0015_scan_hours"])
    rows = await conn.fetch("SELECT hour, scans, counts::text FROM scan_hours ORDER BY hour")
    assert [(r["hour"], r["scans"]) for r in rows] == [(HOUR, 5), (HOUR.replace(hour=11), 1)]
    assert orjson.loads(rows[0]["counts"]) == {
        "country": {"FR": 3, "": 2}, "device": {"mobile": 5}, "os": {"iOS": 5}, "browser": {"Mobile Safari": 5},
        "scan_method": {"camera": 3, "manual_entry": 2}, "scanner_app": {"iOS Camera": 3, "": 2},
        "outcome": {"redirected": 5}, "rule": {"": 3, "2": 2}, "variant": {"": 5}}
    assert orjson.loads(rows[1]["counts"])["country"] == {"DE": 1}
    assert await conn.fetchval("SELECT to_regclass('scan_rollups')") is None
