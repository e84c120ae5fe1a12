"""The load test's accounting, scan by scan (docs/loadtests.md).

Every scan the load test makes carries its own identity in the `Referer` header, which the edge keeps in
the scan record and the ingest worker stores. After the run each answer is matched with the stored rows of
its identity, and each answer is judged against the group states the admins' writes produced:

- **failed**: an answer outside the contract — a 5xx, a timeout or broken connection, any status other than
  302/404;
- **lost**: answered, but no row stored; **duplicated**: more than one row stored;
- **wrong outcome**: the stored `outcome` disagrees with what the visitor got (302 is `redirected`, the 404
  of a paused group is `inactive`);
- **stale**: the answer belongs to a state older than the newest write whose 2xx the admin had received
  `grace` seconds before the scan started (0 by default: read-your-writes, docs/freshness.md). Writes to one
  group are ordered by the `version` the API returned, never by arrival order.

Clocks: every timestamp is `time.monotonic()`, which on Linux is one clock for every process of the machine.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REFERER_BASE = "https://loadtest.scanroute.invalid/scan/"
OUTCOME_OF_STATUS = {302: "redirected", 404: "inactive"}


@dataclass(frozen=True, slots=True)
class GroupState:
    """What scans of a group's codes must return while this state holds."""

    url: str
    status: str  # active | inactive
    campaign: str  # the group's utm_campaign

    def expected(self, visitor_query: str) -> tuple[int, str | None]:
        if self.status != "active":
            return 404, None
        query = f"utm_campaign={self.campaign}" + (f"&{visitor_query}" if visitor_query else "")
        return 302, f"{self.url}?{query}"


@dataclass(frozen=True, slots=True)
class Write:
    """One admin change of a group, as the API acknowledged it."""

    group_id: str
    version: int
    sent: float
    received: float
    state: GroupState


@dataclass(frozen=True, slots=True)
class Answer:
    """One scan as the load generator saw it. `status` 0 means no answer (timeout, connection error)."""

    ref: str
    code_id: str
    group_id: str
    method: str
    query: str
    started: float
    finished: float
    status: int
    location: str | None
    error: str = ""


@dataclass
class History:
    """Every state of every group, by version; answers which states a scan may see."""

    writes: dict[str, list[Write]] = field(default_factory=lambda: defaultdict(list))

    def add(self, write: Write) -> None:
        self.writes[write.group_id].append(write)

    def acceptable(self, group_id: str, started: float, finished: float, grace: float) -> list[GroupState]:
        """The state of the newest write acknowledged before `started - grace`, and every newer one that was
        sent before the scan finished (those raced with it)."""
        writes = sorted(self.writes[group_id], key=lambda w: w.version)
        settled = [w.version for w in writes if w.received <= started - grace]
        floor = max(settled) if settled else writes[0].version
        return [w.state for w in writes if w.version == floor or (w.version > floor and w.sent <= finished)]


@dataclass
class Report:
    answered: int = 0
    stored: int = 0
    failed: list[Answer] = field(default_factory=list)
    lost: list[Answer] = field(default_factory=list)
    duplicated: list[tuple[Answer, int]] = field(default_factory=list)
    wrong_outcome: list[tuple[Answer, str]] = field(default_factory=list)
    stale: list[tuple[Answer, list[tuple[int, str | None]]]] = field(default_factory=list)
    unanswered_rows: int = 0  # rows of requests whose answer never arrived (timeouts): not judged

    @property
    def ok(self) -> bool:
        return not (self.failed or self.lost or self.duplicated or self.wrong_outcome or self.stale)

    def lines(self, examples: int = 20) -> Iterator[str]:
        yield f"answers: {self.answered}   rows stored for them: {self.stored}"
        yield (f"failed: {len(self.failed)}   lost: {len(self.lost)}   duplicated: {len(self.duplicated)}   "
               f"wrong outcome: {len(self.wrong_outcome)}   stale: {len(self.stale)}")
        for answer in self.failed[:examples]:
            yield f"  failed {answer.ref}: {answer.method} code {answer.code_id} → {answer.status or answer.error}"
        for answer in self.lost[:examples]:
            yield f"  lost {answer.ref}: {answer.method} code {answer.code_id} answered {answer.status}, no row"
        for answer, rows in self.duplicated[:examples]:
            yield f"  duplicated {answer.ref}: code {answer.code_id} stored {rows} times"
        for answer, outcome in self.wrong_outcome[:examples]:
            yield f"  wrong outcome {answer.ref}: answered {answer.status}, stored `{outcome}`"
        for answer, allowed in self.stale[:examples]:
            yield f"  stale {answer.ref}: got {(answer.status, answer.location)}, allowed {allowed}"


def account(answers: Iterable[Answer], rows: dict[str, list[str]], history: History,
            grace: float = 0.0) -> Report:
    """Judge every answer. `rows` maps a scan identity to the outcomes stored under it."""
    report = Report()
    seen: set[str] = set()
    for answer in answers:
        seen.add(answer.ref)
        if answer.status not in OUTCOME_OF_STATUS:
            report.failed.append(answer)
            continue
        report.answered += 1
        outcomes = rows.get(answer.ref, [])
        report.stored += len(outcomes)
        if not outcomes:
            report.lost.append(answer)
        elif len(outcomes) > 1:
            report.duplicated.append((answer, len(outcomes)))
        if outcomes and outcomes[0] != OUTCOME_OF_STATUS[answer.status]:
            report.wrong_outcome.append((answer, outcomes[0]))
        allowed = [state.expected(answer.query) for state in
                   history.acceptable(answer.group_id, answer.started, answer.finished, grace)]
        if (answer.status, answer.location) not in allowed:
            report.stale.append((answer, allowed))
    report.unanswered_rows = sum(len(v) for ref, v in rows.items() if ref not in seen)
    return report


def write_jsonl(path: Path, records: Iterable[Answer | Write]) -> None:
    with path.open("w") as out:
        for record in records:
            out.write(json.dumps(asdict(record)) + "\n")


def read_answers(paths: Iterable[Path]) -> Iterator[Answer]:
    for path in paths:
        with path.open() as lines:
            for line in lines:
                yield Answer(**json.loads(line))


def read_writes(path: Path) -> History:
    history = History()
    with path.open() as lines:
        for line in lines:
            data = json.loads(line)
            data["state"] = GroupState(**data["state"])
            history.add(Write(**data))
    return history

