"""People scanning a printed campaign at volume (docs/loadtests.md).

Run by `make loadtest` (loadtests/run_loadtest.py), or by hand against any deployment, on one machine or
many (`--processes`, or `--master` here and `--worker --master-host …` elsewhere):

    LOADTEST_CAMPAIGN=campaign.json LOADTEST_RESULTS_DIR=results/ \\
        locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless -u 200 -t 60s

Each scan carries its own identity in `Referer` (the edge stores it with the scan), and every process writes
what it saw, scan by scan, to `LOADTEST_RESULTS_DIR/answers-<host>-<pid>.jsonl` when it stops; the
accounting (loadtests/accounting.py) judges them afterwards. Knobs are documented in loadtests/campaign.py.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

from loadtests.accounting import REFERER_BASE, Answer, write_jsonl
from loadtests.campaign import BOTS, DESKTOP, MOBILE, Campaign

CAMPAIGN = Campaign.load(Path(os.environ.get("LOADTEST_CAMPAIGN", "campaign.json")))
RESULTS_DIR = Path(os.environ.get("LOADTEST_RESULTS_DIR", "loadtest-results"))
answers: list[Answer] = []
numbers = itertools.count()
_identity: tuple[int, str] = (0, "")


def process_identity() -> str:
    """Unique per load-generating process; `--processes` forks after this file was imported, so it is made
    in the process that uses it."""
    global _identity
    if _identity[0] != os.getpid():
        _identity = (os.getpid(), f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    return _identity[1]


class ScannerUser(FastHttpUser):
    """Someone pointing a phone (or a crawler) at a printed code."""

    wait_time = between(0.0, CAMPAIGN.knobs.scan_wait)
    network_timeout = 10.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def scan(self) -> None:
        code_id, slug, group_id = CAMPAIGN.pick_code(self.rng)
        knobs = CAMPAIGN.knobs
        roll = self.rng.random()
        agent = (self.rng.choice(BOTS) if roll < knobs.bot_share
                 else self.rng.choice(MOBILE if self.rng.random() < 0.85 else DESKTOP))
        visitor = f"utm_source=table{self.rng.randint(1, 40)}" if self.rng.random() < knobs.query_share else ""
        method = "HEAD" if self.rng.random() < knobs.head_share else "GET"
        path = f"/{slug}?qr=1" + (f"&{visitor}" if visitor else "")
        ref = f"{REFERER_BASE}{process_identity()}/{next(numbers)}"
        headers = {"User-Agent": agent, "Host": CAMPAIGN.edge_host, "Referer": ref}
        started = time.monotonic()
        with self.client.request(method, path, name=f"{method} /{{slug}}", allow_redirects=False,
                                 headers=headers, catch_response=True) as response:
            finished = time.monotonic()
            status = response.status_code or 0
            error = "" if status else f"{type(response.error).__name__}: {response.error}"
            answers.append(Answer(ref, code_id, group_id, method, visitor, started, finished, status,
                                  response.headers.get("location") if status else None, error))
            if status in (302, 404):
                response.success()  # judged scan by scan afterwards, against the admins' writes
            else:
                response.failure(f"outside the contract: {status or error}")


@events.quitting.add_listener
def write_answers(environment: Any, **_: Any) -> None:
    if answers:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        write_jsonl(RESULTS_DIR / f"answers-{process_identity()}.jsonl", answers)
