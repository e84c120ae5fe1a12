"""The isolation matrix: every /v1 route, every kind of caller."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.routing import Route

from control_plane.api.app import create_app
from shared.settings import ControlPlaneSettings
from tests.conftest import KeyFactory, bearer

ALL = ("qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write")
BODIES = {"PUT": {"value": "v"}}


def v1_routes(settings: ControlPlaneSettings) -> list[tuple[str, str]]:
    app = create_app(settings)
    return [(method, route.path) for route in app.routes if isinstance(route, Route)
            and route.path.startswith("/v1/") for method in sorted(route.methods or ()) if method != "HEAD"]


async def test_every_route_isolates_orgs_and_modes_and_checks_scopes(
        api: httpx.AsyncClient, make_key: KeyFactory, cp_settings: ControlPlaneSettings) -> None:
    owner = await make_key("acme", scopes=ALL)
    strangers = {"other org": await make_key("globex", scopes=ALL),
                 "test mode": await make_key("acme", scopes=ALL, livemode=False)}
    scopeless = await make_key("acme", scopes=())
    group = (await api.post("/v1/qr-groups", headers=bearer(owner), json={"url_params": {"k": "v"},
                                                                          "properties": {"k": "v"}})).json()
    code = (await api.post("/v1/qr-codes", headers=bearer(owner), json={
        "group_id": group["id"], "url_params": {"k": "v"}, "properties": {"k": "v"}})).json()
    folder = (await api.post("/v1/folders", headers=bearer(owner), json={"name": "f"})).json()
    domain = (await api.post("/v1/domains", headers=bearer(owner), json={"hostname": "go.acme.test"})).json()
    spare = (await api.post("/v1/api-keys", headers=bearer(owner), json={"scopes": ["qr:read"]})).json()
    event = (await api.get("/v1/events", headers=bearer(owner))).json()["data"][0]
    endpoint = (await api.post("/v1/webhook-endpoints", headers=bearer(owner), json={
        "url": "https://93.184.215.14/hook", "events": ["*"]})).json()
    export = (await api.post("/v1/exports", headers=bearer(owner), json={"format": "codes_csv",
                                                                         "group_id": group["id"]})).json()
    imported = (await api.post("/v1/imports?dry_run=true", headers={**bearer(owner), "Content-Type": "text/csv"},
                               content=b"name\nA\n")).json()
    params = {"code_id": code["id"], "group_id": group["id"], "owner_id": None, "folder_id": folder["id"],
              "domain_id": domain["id"], "key_id": spare["id"], "event_id": event["id"], "key": "k",
              "endpoint_id": endpoint["id"], "export_id": export["id"], "import_id": imported["id"]}
    checked = 0
    for method, template in v1_routes(cp_settings):
        owner_id = code["id"] if template.startswith("/v1/qr-codes/") else group["id"]
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", template).format(**{**params, "owner_id": owner_id})
        body: dict[str, Any] = BODIES.get(method, {})
        if path.endswith("/codes"):
            body = {"count": 1}
        elif template.startswith("/v1/folders/"):
            body = {"name": "renamed"}
        send = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
        unauthenticated = await api.request(method, path, **send)
        assert unauthenticated.status_code == 401, (method, path)
        forbidden = await api.request(method, path, headers=bearer(scopeless), **send)
        assert forbidden.status_code == 403, (method, path, forbidden.text)
        if "{" in template:
            for who, stranger in strangers.items():
                response = await api.request(method, path, headers=bearer(stranger), **send)
                assert response.status_code == 404, (who, method, path, response.text)
                assert response.headers["content-type"] == "application/problem+json"
        checked += 1
    assert checked >= 30
    revoked = spare["secret"]
    assert (await api.get("/v1/qr-codes", headers=bearer(revoked))).status_code == 200
    await api.delete(f"/v1/api-keys/{spare['id']}", headers=bearer(owner))
    assert (await api.get("/v1/qr-codes", headers=bearer(revoked))).status_code == 401
