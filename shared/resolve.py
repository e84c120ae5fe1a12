"""Scan-time resolution (docs/api.md §3.1): one function, used by the edge and by the API's `resolved`."""

from __future__ import annotations

from dataclasses import dataclass

from shared.params import LocationTemplate
from shared.rows import CodeRow, Destination, GroupRow
from shared.scan_plan import ScanPlan, build_plan
from shared.settings import Templates

# outcome → HTTP status the edge answers with
HTTP_STATUS = {"redirected": 302, "inactive": 404, "archived": 410, "unconfigured": 404, "deleted": 410}


@dataclass(frozen=True, slots=True)
class Resolution:
    outcome: str  # redirected | inactive | archived | unconfigured | deleted
    status: str  # the effective status: active | inactive | archived
    destination: Destination | None  # the effective destination, None when unconfigured
    source: str | None  # where the destination came from: "code", "group" or None
    location: LocationTemplate | None  # set when outcome is "redirected"
    properties: dict[str, str]
    plan: ScanPlan | None = None  # rules, split, validity, password (docs/rules.md), when redirected

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.outcome]


def resolve(code: CodeRow, group: GroupRow | None, templates: Templates) -> Resolution:
    """Resolve a scan of `code` (whose group row is `group`, or None) without visitor params."""
    if group is not None and group.id != code.group_id:
        group = None
    status = code.status or (group.status if group else None) or "active"
    destination, source = code.destination, "code"
    if destination.type is None:
        destination, source = (group.destination, "group") if group else (Destination(), "code")
    properties = dict(group.properties) if group else {}
    properties.update(code.properties)
    target = destination.target(templates)
    if target is None:
        destination, source = None, None  # type: ignore[assignment]
    if code.deleted:
        outcome = "deleted"
    elif status != "active":
        outcome = status
    elif target is None:
        outcome = "unconfigured"
    else:
        outcome = "redirected"
    location, plan = None, None
    if target is not None and outcome == "redirected":
        location = LocationTemplate.build(target, group.url_params if group else (), code.url_params)
        plan = build_plan(code, group, code.destination.type is None, templates, location)
    return Resolution(outcome, status, destination, source, location, properties, plan)
