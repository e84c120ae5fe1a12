"""Host names are IDNA 2008 (+ UTS #46) everywhere, in one canonical form: lower-case A-labels, no trailing dot
(docs/api.md §2.3 and §4.1). An `xn--` label that is no valid A-label is a 422 naming the field."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import KeyFactory, bearer

INVALID = ["xn--zz.example", "xn--a.example", "go.xn--zz.example",
           "go_links.example", "a" * 64 + ".example", ("a" * 63 + ".") * 4 + "example", "go..example"]


@pytest.mark.parametrize(("given", "stored"), [
    ("i❤.ws", "xn--i-7iq.ws"), ("XN--I-7IQ.ws", "xn--i-7iq.ws"), ("☃.example", "xn--n3h.example"),
    ("ab--ü.example", "xn--ab---3ra.example")])
async def test_a_name_idna_2008_refuses_but_browsers_take_is_taken_as_idna_2003_has_it(
        api: httpx.AsyncClient, make_key: KeyFactory, given: str, stored: str) -> None:
    """Symbols and emoji (i❤.ws) are no IDNA 2008 names, but every browser still resolves them as IDNA 2003
    does: refusing them broke edits of codes stored before (docs/api.md §2.3)."""
    key = await make_key()
    created = await api.post("/v1/domains", headers=bearer(key), json={"hostname": given})
    assert created.status_code == 201 and created.json()["hostname"] == stored, created.text
    code = await api.post("/v1/qr-codes", headers=bearer(key), json={
        "destination": {"type": "url", "url": f"https://{given}/menu"}})
    assert code.status_code == 201 and code.json()["destination"]["url"] == f"https://{stored}/menu", code.text


async def test_a_unicode_domain_is_stored_as_its_a_labels_and_is_one_name_in_every_spelling(
        api: httpx.AsyncClient, make_key: KeyFactory) -> None:
    acme, globex = await make_key(), await make_key("globex")
    created = await api.post("/v1/domains", headers=bearer(acme), json={"hostname": "BÜCHER.example"})
    assert created.status_code == 201, created.text
    assert created.json()["hostname"] == "xn--bcher-kva.example"
    for spelling in ("bücher.example", "xn--bcher-kva.example", "XN--BCHER-KVA.Example.", "bücher.example:8443"):
        taken = await api.post("/v1/domains", headers=bearer(globex), json={"hostname": spelling})
        assert taken.status_code == 409, (spelling, taken.text)
    # A code on the domain, named in either form, is on the A-label host its printed short URL names.
    for spelling in ("bücher.example", "XN--BCHER-KVA.example"):
        code = await api.post("/v1/qr-codes", headers=bearer(acme), json={"domain": spelling})
        assert code.status_code == 201, (spelling, code.text)
        assert code.json()["domain"] == "xn--bcher-kva.example"
        assert code.json()["short_url"].startswith("https://xn--bcher-kva.example/")


async def test_a_trailing_dot_and_capitals_are_not_part_of_the_stored_name(api: httpx.AsyncClient,
                                                                            make_key: KeyFactory) -> None:
    created = await api.post("/v1/domains", headers=bearer(await make_key()), json={"hostname": "Go.Acme.com.:8443"})
    assert created.status_code == 201, created.text
    assert created.json()["hostname"] == "go.acme.com:8443"


@pytest.mark.parametrize("hostname", INVALID)
async def test_an_invalid_domain_name_is_a_422_naming_hostname(api: httpx.AsyncClient, make_key: KeyFactory,
                                                              hostname: str) -> None:
    refused = await api.post("/v1/domains", headers=bearer(await make_key()), json={"hostname": hostname})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in refused.json()["errors"]] == ["hostname"], refused.text


@pytest.mark.parametrize(("url", "stored"), [
    ("https://bücher.example/ä", "https://xn--bcher-kva.example/%C3%A4"),
    ("https://XN--BCHER-KVA.example/", "https://xn--bcher-kva.example/"),
    # IDNA 2003 (Python's codec) made this fass.de, another domain; IDNA 2008 keeps the ß.
    ("https://faß.de/", "https://xn--fa-hia.de/"),
    ("https://my_host.example.com./x", "https://my_host.example.com./x"),
])
async def test_a_destination_host_is_stored_in_idna_2008_a_labels(api: httpx.AsyncClient, make_key: KeyFactory,
                                                                  url: str, stored: str) -> None:
    created = await api.post("/v1/qr-codes", headers=bearer(await make_key()),
                             json={"destination": {"type": "url", "url": url}})
    assert created.status_code == 201, created.text
    assert created.json()["destination"]["url"] == stored


@pytest.mark.parametrize("host", [host for host in INVALID if "_" not in host])  # a URL's host may have them
async def test_a_destination_with_an_invalid_host_name_is_a_422_naming_the_url(
        api: httpx.AsyncClient, make_key: KeyFactory, host: str) -> None:
    refused = await api.post("/v1/qr-codes", headers=bearer(await make_key()),
                             json={"destination": {"type": "url", "url": f"https://{host}/menu"}})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    errors = refused.json()["errors"]
    assert [e["field"] for e in errors] == ["destination.url"] and "host" in errors[0]["message"], errors
