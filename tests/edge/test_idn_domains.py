"""A domain registered in Unicode is stored in A-labels, which is what browsers send in `Host`: the edge answers
its scans in any letter case, with a trailing dot or without (docs/api.md §2.3, §3.4)."""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg
import httpx

from tests.conftest import KeyFactory, bearer
from tests.edge.test_scan import make_code


async def test_a_unicode_domain_answers_scans_sent_to_its_a_labels(api: httpx.AsyncClient, edge: httpx.AsyncClient,
                                                                   make_key: KeyFactory) -> None:
    key = await make_key()
    unicode_name = f"bücher-{secrets.token_hex(3)}.example"
    a_labels = unicode_name.encode("idna").decode()  # IDNA 2003 and 2008 agree on this name
    domain = await api.post("/v1/domains", headers=bearer(key), json={"hostname": unicode_name})
    assert domain.status_code == 201, domain.text
    code = await make_code(api, key, domain=unicode_name, slug="menu",
                           destination={"type": "url", "url": "https://shop.example/menu"})
    for host in (a_labels, a_labels.upper(), a_labels + "."):
        scan = await edge.get("/menu", headers={"host": host})
        assert (scan.status_code, scan.headers.get("location")) == (302, "https://shop.example/menu"), (host, code)


async def test_a_domain_registered_before_idna_2008_was_checked_still_answers(
        api: httpx.AsyncClient, edge: httpx.AsyncClient, make_key: KeyFactory, db: asyncpg.Connection[Any]) -> None:
    # `xn--i-7iq.ws` (from `i❤.ws`) matched the earlier pattern and was stored as given; IDNA 2008 refuses it
    # today, but its row, its codes and the Host browsers send for it are the same (docs/edge.md).
    key = await make_key()
    registered = await api.post("/v1/domains", headers=bearer(key), json={"hostname": "placeholder.example"})
    assert registered.status_code == 201, registered.text
    await db.execute("UPDATE domains SET hostname = 'xn--i-7iq.ws' WHERE id = $1", registered.json()["id"])
    await make_code(api, key, domain="xn--i-7iq.ws", slug="menu",
                    destination={"type": "url", "url": "https://shop.example/menu"})
    for host in ("xn--i-7iq.ws", "XN--I-7IQ.ws."):
        scan = await edge.get("/menu", headers={"host": host})
        assert (scan.status_code, scan.headers.get("location")) == (302, "https://shop.example/menu"), host
