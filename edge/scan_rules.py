"""Validity, password, rules and split at scan time (docs/rules.md), for whichever server answers the scan:
what a request gets when its code's resolution carries a plan. GET and HEAD are decided synchronously from
the cached rows; only a password POST waits (for the bounded, throttled check)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

from shared.passwords import PasswordChecks
from shared.resolve import Resolution
from shared.scan_plan import PAGE_STATUS, Decision
from shared.visitor import Visitor

# pages of docs/rules.md, by answer (the others take the status of their outcome, shared.resolve.HTTP_STATUS)
ANSWER_STATUS = {**PAGE_STATUS, "password_throttled": 429}
Headers = list[tuple[bytes, bytes]]


class Answer(NamedTuple):
    decision: Decision  # what the scan event records; its location, when set, is the redirect
    page: str  # the page to answer with when there is no location
    headers: Headers  # extra response headers

    def status(self, resolution: Resolution) -> int:
        return ANSWER_STATUS.get(self.page) or resolution.http_status


def plain(resolution: Resolution) -> Answer:
    return Answer(Decision(resolution.outcome, resolution.location), resolution.outcome, [])


class ScanRules:
    def __init__(self, passwords: PasswordChecks | None = None) -> None:
        self.passwords = passwords or PasswordChecks()
        self.clock: Callable[[], float] = time.time  # rules and validity read the time here (tests freeze it)

    @staticmethod
    def takes_password(resolution: Resolution) -> bool:
        """Whether a POST to this code means something: only a password form posts to a code."""
        return resolution.plan is not None and resolution.plan.password_hash is not None

    def answer(self, resolution: Resolution, visitor: Visitor) -> Answer:
        """GET or HEAD: validity, then the password form, then rules and split."""
        plan, default = resolution.plan, resolution.location
        if plan is None or default is None:
            return plain(resolution)
        decision = plan.decide(visitor, self.clock(), default)
        return Answer(decision, decision.outcome, [])

    async def unlock(self, code_id: str, resolution: Resolution, visitor: Visitor, password: str) -> Answer:
        """POST with the form's password: the normal answer if right (a scan of its own), else the form."""
        plan, default = resolution.plan, resolution.location
        if plan is None or plan.password_hash is None or default is None:
            return plain(resolution)
        now = self.clock()
        if plan.expiry(now) is not None:
            return self.answer(resolution, visitor)  # validity comes first, password or not
        verdict = await self.passwords.check(code_id, visitor.client_ip, plan.password_hash, password)
        if verdict.result == "right":
            decision = plan.decide(visitor, now, default, unlocked=True)
            return Answer(decision, decision.outcome, [])
        if verdict.result == "wrong":
            return Answer(Decision("password_failed", None), "password_failed", [])
        retry = str(max(1, math.ceil(verdict.retry_after))).encode()
        return Answer(Decision("password_failed", None), "password_throttled", [(b"retry-after", retry)])

    def close(self) -> None:
        self.passwords.close()
