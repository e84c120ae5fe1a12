"""A write that refers to a domain, group or folder and a delete of that object, at the same moment: one of
the two wins cleanly — never a code on a domain that no longer exists (which another organisation could then
register), and never a 500.

The two requests are put in the losing order on purpose: another transaction holds the organisation's usage
counter, so the create (or mint) stops after its reference check, at `meter_created`; the delete runs while it
waits, and the holder lets go afterwards."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from control_plane.services.usage import period
from tests.conftest import KeyFactory, bearer
from tests.edge.test_scan import make_code

BOUND = 30.0  # seconds; a bound on a wait, not a measurement


async def org_of(db: asyncpg.Connection[Any], name: str) -> str:
    org_id: str = await db.fetchval("SELECT id FROM organisations WHERE name = $1", name)
    return org_id


async def waiting_for_a_lock(db: asyncpg.Connection[Any], count: int) -> None:
    """Until `count` other backends wait for a lock (the requests, stopped where this test wants them)."""
    async with asyncio.timeout(BOUND):
        while await db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                " AND datname = current_database()") < count:
            await asyncio.sleep(0.02)


async def while_usage_is_held(db: asyncpg.Connection[Any], database_url: str, org_id: str,
                              first: Any, then: Any) -> tuple[httpx.Response, httpx.Response]:
    """`first()` runs until it waits for the organisation's usage counter; `then()` runs meanwhile (it may
    wait in turn, for `first`); then the counter is let go. Returns both answers."""
    holder = await asyncpg.connect(database_url, timeout=10)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(
            "INSERT INTO usage_counters (org_id, period_start, qr_generated) VALUES ($1, $2, 0)"
            " ON CONFLICT (org_id, period_start) DO UPDATE SET qr_generated = usage_counters.qr_generated",
            org_id, period()[0])
        first_task = asyncio.create_task(first())
        await waiting_for_a_lock(db, 1)
        then_task = asyncio.create_task(then())
        await asyncio.wait([then_task], timeout=1.0)  # done, or waiting for `first`
        await transaction.rollback()
        return await asyncio.wait_for(first_task, BOUND), await asyncio.wait_for(then_task, BOUND)
    finally:
        await holder.close()


async def test_a_domain_deleted_while_a_code_is_created_on_it(api: httpx.AsyncClient, make_key: KeyFactory,
                                                              db: asyncpg.Connection[Any], database_url: str) -> None:
    key = await make_key()
    domain = (await api.post("/v1/domains", headers=bearer(key), json={"hostname": "go.acme.com"})).json()
    created, deleted = await while_usage_is_held(
        db, database_url, await org_of(db, "acme"),
        lambda: api.post("/v1/qr-codes", headers=bearer(key), json={"domain": "go.acme.com"}),
        lambda: api.delete(f"/v1/domains/{domain['id']}", headers=bearer(key)))

    assert created.status_code in (201, 422) and deleted.status_code in (204, 409), (created.text, deleted.text)
    codes_on_it = await db.fetchval("SELECT count(*) FROM qr_codes WHERE domain = 'go.acme.com'")
    still_there = await db.fetchval("SELECT count(*) FROM domains WHERE hostname = 'go.acme.com'")
    assert (codes_on_it, still_there) in ((1, 1), (0, 0))  # never a code on a domain that is gone
    if deleted.status_code == 204:  # the hostname is free: another organisation may take it
        other = await make_key("globex")
        assert (await api.post("/v1/domains", headers=bearer(other), json={"hostname": "go.acme.com"})).is_success


async def test_a_group_deleted_while_codes_are_minted_in_it(api: httpx.AsyncClient, make_key: KeyFactory,
                                                            db: asyncpg.Connection[Any], database_url: str) -> None:
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}})).json()
    minted, deleted = await while_usage_is_held(
        db, database_url, await org_of(db, "acme"),
        lambda: api.post(f"/v1/qr-groups/{group['id']}/codes", headers=bearer(key), json={"count": 3}),
        lambda: api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key)))

    assert minted.status_code in (201, 404) and deleted.status_code == 204, (minted.text, deleted.text)
    if minted.status_code == 201:  # the delete came after: the codes stay, detached, as any group's codes
        ids = [code["id"] for code in minted.json()["data"]]
        assert await db.fetchval("SELECT count(*) FROM qr_codes WHERE id = ANY($1) AND group_id IS NULL", ids) == 3



async def test_a_group_delete_and_a_patch_moving_its_code_out_do_not_deadlock(
        api: httpx.AsyncClient, make_key: KeyFactory, database_url: str) -> None:
    """The PATCH locks its code, then (its UPDATE's code_count trigger) the group it leaves; the group's DELETE
    must take the same order, or PostgreSQL aborts one of them (a 503). The PATCH is replayed statement by
    statement on a connection of its own so the interleaving is exact."""
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={"name": "g"})).json()
    code = await make_code(api, key, group_id=group["id"])
    patch = await asyncpg.connect(database_url, timeout=10)
    watcher = await asyncpg.connect(database_url, timeout=10)
    try:
        tx = patch.transaction()
        await tx.start()
        await patch.execute("SELECT 1 FROM qr_codes c WHERE c.id = $1 FOR UPDATE OF c", code["id"])  # fetch_code
        delete = asyncio.create_task(api.delete(f"/v1/qr-groups/{group['id']}", headers=bearer(key)))
        await waiting_for_a_lock(watcher, 1)  # the DELETE, for the code this PATCH holds
        patch_error = None
        try:  # the PATCH's UPDATE (group_id → null): its trigger updates the group's code_count
            await patch.execute("UPDATE qr_codes SET group_id = NULL, version = version + 1, updated_at = now()"
                                " WHERE id = $1", code["id"])
            await tx.commit()
        except asyncpg.PostgresError as exc:
            patch_error = exc
            await tx.rollback()
        answer = await delete
        assert (answer.status_code, patch_error) == (204, None), answer.text
        assert (await api.get(f"/v1/qr-groups/{group['id']}", headers=bearer(key))).status_code == 404
    finally:
        await patch.close()
        await watcher.close()


async def test_a_group_limit_change_and_the_groups_delete_do_not_deadlock(
        api: httpx.AsyncClient, make_key: KeyFactory, database_url: str) -> None:
    """A `max_scans` change re-marks the group's codes at their limit; a group delete locks the group's codes
    by id, then the group. The PATCH must take them in the same order. The DELETE is replayed statement by
    statement (services/qr_groups.py delete_group) on a connection of its own so the interleaving is exact."""
    key = await make_key()
    group = (await api.post("/v1/qr-groups", headers=bearer(key), json={
        "destination": {"type": "url", "url": "https://example.com/"}})).json()
    code = await make_code(api, key, group_id=group["id"])
    delete = await asyncpg.connect(database_url, timeout=10)
    watcher = await asyncpg.connect(database_url, timeout=10)
    try:
        await delete.execute("UPDATE qr_codes SET scan_count = 5 WHERE id = $1", code["id"])  # at a limit of 5
        tx = delete.transaction()
        await tx.start()
        await delete.execute("SELECT 1 FROM qr_codes WHERE group_id = $1 ORDER BY id FOR UPDATE", group["id"])
        patch = asyncio.create_task(api.patch(f"/v1/qr-groups/{group['id']}", headers=bearer(key),
                                              json={"max_scans": 5}))
        await waiting_for_a_lock(watcher, 1)  # the PATCH, for the group or (in the delete's order) the code
        delete_error = None
        try:
            await delete.execute("SELECT 1 FROM qr_groups WHERE id = $1 FOR UPDATE", group["id"])
            await delete.execute("UPDATE qr_codes SET group_id = NULL, version = version + 1 WHERE group_id = $1",
                                 group["id"])
            await delete.execute("DELETE FROM qr_groups WHERE id = $1", group["id"])
            await tx.commit()
        except asyncpg.PostgresError as exc:
            delete_error = exc
            await tx.rollback()
        answer = await patch
        assert (delete_error, answer.status_code) == (None, 404), answer.text  # the group it changed is gone
    finally:
        await delete.close()
        await watcher.close()
