"""What a scan of a code with rules, a split, validity or a password does (docs/rules.md).

Built once per (code row, group row) next to the code's Resolution — rules compiled, every possible
destination merged with the URL params into a Location template — so a scan only evaluates conditions
and picks a template: no I/O, no parsing of stored JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from shared.params import LocationTemplate
from shared.routing import Routing, compile_routing
from shared.rows import CodeRow, Destination, GroupRow, Pairs
from shared.settings import Templates
from shared.validity import Validity
from shared.visitor import Facts

# outcomes of docs/api.md §3.5 → HTTP status when the edge answers with a page
PAGE_STATUS = {"scheduled": 404, "expired": 410, "password_prompt": 200, "password_failed": 403}


class Decision(NamedTuple):
    outcome: str  # redirected | scheduled | expired | password_prompt
    location: LocationTemplate | None  # where to redirect; None = answer with the outcome's page
    rule: int | None = None
    variant: int | None = None


PASSWORD_PROMPT = Decision("password_prompt", None)


@dataclass(frozen=True, slots=True)
class ScanPlan:
    validity: Validity  # effective (code's fields, else the group's)
    limit_reached: bool
    password_hash: str | None  # the code's, else the group's
    routing: Routing | None
    rule_locations: tuple[LocationTemplate | None, ...]  # per rule; None when its target is not configured
    variant_locations: tuple[LocationTemplate | None, ...]
    expired_location: LocationTemplate | None
    default: LocationTemplate  # the code's usual destination
    # Every decision a scan can be routed to, prepared with the plan, in the order of `Routing.index`: the rules',
    # the split's variants, then the usual destination (index -1). A scan picks one, it builds none.
    decisions: tuple[Decision, ...] = field(init=False)
    # `decisions` as the edge's answers (the decision, the page it answers with, no extra headers): a scan of a
    # plan that only routes — no validity to check, no password — takes one as it is (EdgeApp.decide).
    answers: tuple[tuple[Decision, str, tuple[()]], ...] = field(init=False)
    route: Callable[[Facts, bytes, str, float], int] | None = field(init=False)  # its routing's index, if only that
    limited: bool = field(init=False)  # a validity window or a scan limit to check

    def __post_init__(self) -> None:
        default = self.default
        object.__setattr__(self, "limited", self.validity.limited)
        object.__setattr__(self, "decisions", (
            *(Decision("redirected", location or default, n) for n, location in enumerate(self.rule_locations)),
            *(Decision("redirected", location or default, None, n)
              for n, location in enumerate(self.variant_locations)),
            Decision("redirected", default)))
        object.__setattr__(self, "answers", tuple((decision, decision.outcome, ()) for decision in self.decisions))
        object.__setattr__(self, "route", self.routing.index if self.routing is not None and not self.limited
                           and self.password_hash is None else None)

    def decide(self, facts: Facts, query: bytes, ip: str, now: float, unlocked: bool = False) -> Decision:
        """Validity, then the password (unless `unlocked` by a right one), then rules and split (steps 3–5: the
        first matching rule, else the split, else the default destination), for the scan's facts, query and
        address."""
        if self.limited:
            expired = self.expiry(now)
            if expired is not None:
                return expired
        if self.password_hash is not None and not unlocked:
            return PASSWORD_PROMPT
        return self.decisions[self.routing.index(facts, query, ip, now) if self.routing is not None else -1]

    def expiry(self, now: float) -> Decision | None:
        """Step 1: `scheduled` or `expired`, else None (the scan goes on)."""
        outcome = self.validity.outcome(now, self.limit_reached)
        if outcome is None:
            return None
        return Decision(outcome, self.expired_location if outcome == "expired" else None)


def _fields(text: str) -> dict[str, Any]:
    return orjson.loads(text) if text else {}


def build_plan(code: CodeRow, group: GroupRow | None, inherits: bool, templates: Templates,
               default: LocationTemplate) -> ScanPlan | None:
    """None when neither the code nor its group uses any of these fields (the usual case)."""
    own = _fields(code.routing)
    shared_fields = _fields(group.routing) if group is not None else {}
    password_hash = code.password_hash or (group.password_hash if group is not None else None)
    if not own and not shared_fields and password_hash is None:
        return None
    validity = Validity.from_json(own).inherit(Validity.from_json(shared_fields) if shared_fields else None)
    routing = compile_routing(own.get("rules") or (), own.get("split"), code.id,
                              shared_fields.get("rules") or (), shared_fields.get("split"),
                              group.id if group is not None else None, inherits)
    if routing is None and not validity.limited and password_hash is None:
        return None
    group_params = group.url_params if group is not None else ()

    def location(destination: Destination | None) -> LocationTemplate | None:
        return _location(destination, templates, group_params, code.url_params)

    return ScanPlan(
        validity, code.limit_reached, password_hash, routing,
        tuple(location(rule.destination) for rule in routing.rules) if routing else (),
        tuple(location(d) for d in routing.split.destinations) if routing and routing.split else (),
        location(validity.expired_destination), default)


def _location(destination: Destination | None, templates: Templates, group_params: Pairs,
              code_params: Pairs) -> LocationTemplate | None:
    target = destination.target(templates) if destination is not None else None
    return LocationTemplate.build(target, group_params, code_params) if target else None
