"""asyncpg pools for every process kind, with JSON handled by orjson."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
# Every session runs in UTC, whatever the TimeZone of the server or the database (initdb takes the host's zone).
# Instants compare the same in any zone, but calendar arithmetic in SQL does not: `timestamptz + interval '1 day'`
# and a date cast to timestamptz follow the session's zone, and analytics buckets and retention are UTC days
# (docs/api.md, docs/ingest.md). Sent when the connection opens, so no statement ever runs in another zone.
SERVER_SETTINGS = {"timezone": "UTC"}


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)  # binary jsonb: a version byte, then the text


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # Binary codecs, so that COPY (which is always binary in asyncpg) can carry JSON too.
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb,
                              format="binary")
    await conn.set_type_codec("json", schema="pg_catalog", encoder=orjson.dumps, decoder=orjson.loads,
                              format="binary")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT,
                                     server_settings=SERVER_SETTINGS)
    assert pool is not None
    return pool


async def connect(dsn: str, *, timeout: float = 10.0) -> asyncpg.Connection[Any]:
    """One connection outside a pool (command-line tools, migrations), in UTC like the pools' connections."""
    return await asyncpg.connect(dsn, timeout=timeout, server_settings=SERVER_SETTINGS)
