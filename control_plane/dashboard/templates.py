"""Jinja2 templates and the headers every dashboard page carries."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

# Only our own origin: the dashboard makes no request to any third-party host (docs/dashboard.md).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self';"
                               " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_environment = Environment(loader=PackageLoader("control_plane.dashboard", "templates"),
                           autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True,
                           extensions=["jinja2.ext.do"])
# The main navigation: (path, label, scope a user needs to see it).
_environment.globals["NAV"] = [
    ("/app/", "Overview", "qr:read"),
    ("/app/groups", "Groups", "qr:read"),
    ("/app/codes", "Codes", "qr:read"),
    ("/app/exports", "Print", "qr:read"),
    ("/app/imports", "Import", "qr:write"),
    ("/app/api-keys", "API keys", "keys:write"),
    ("/app/webhooks", "Webhooks", "webhooks:read"),
    ("/app/usage", "Usage", "qr:read"),
    ("/app/users", "Users", "users:write"),
]
templates = Jinja2Templates(env=_environment)


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response
