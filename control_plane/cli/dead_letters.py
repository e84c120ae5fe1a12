"""`scanroute dead-letters list|replay`: inspect scan entries the ingest worker set aside, and replay them."""

from __future__ import annotations

import argparse
import asyncio
import json

from control_plane.ingest import dead_letters
from shared.database import connect
from shared.keys import RedisKeys
from shared.redis_client import create_redis
from shared.settings import Stores


async def _list(stores: Stores, include_replayed: bool, as_json: bool) -> int:
    conn = await connect(stores.database_url)
    try:
        letters = await dead_letters.waiting(conn, include_replayed=include_replayed, limit=1000)
    finally:
        await conn.close()
    if as_json:
        print(json.dumps([{"id": d.id, "stream_id": d.stream_id, "error": d.error, "deliveries": d.deliveries,
                           "created_at": d.created_at.isoformat(),
                           "replayed_at": d.replayed_at.isoformat() if d.replayed_at else None,
                           "payload": d.payload.decode(errors="replace")} for d in letters]))
    elif not letters:
        print("no dead letters")
    for d in letters if not as_json else []:
        state = f"replayed {d.replayed_at:%Y-%m-%d %H:%M}" if d.replayed_at else "waiting"
        print(f"{d.id}\t{d.created_at:%Y-%m-%d %H:%M:%S}\t{state}\t{d.error}\n\t{d.payload[:200]!r}")
    return 0


async def _replay(stores: Stores, ids: list[int]) -> int:
    conn = await connect(stores.database_url)
    redis = create_redis(stores.redis_url)
    try:
        count = await dead_letters.replay(conn, redis, RedisKeys(stores.redis_namespace).scans, ids or None)
    finally:
        await redis.aclose()
        await conn.close()
    print(f"replayed {count} dead letters onto the scan stream")
    return 0


def run_dead_letters(args: argparse.Namespace) -> int:
    stores = Stores.from_env()
    if args.action == "list":
        return asyncio.run(_list(stores, args.all, args.json))
    return asyncio.run(_replay(stores, args.ids))
