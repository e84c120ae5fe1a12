"""A printed campaign at volume: people scanning table cards, and admins re-routing them mid-run.

Run by `make loadtest` (loadtests/run_loadtest.py), or by hand against any deployment:

    LOADTEST_CAMPAIGN=campaign.json locust -f loadtests/locustfile.py --host http://127.0.0.1:8080

Every response is checked against the state the admins have set (302 with the exact Location, 404 for a
paused group); at the end the per-code response counts are written to LOADTEST_RESULTS for the
accounting report. Knobs are documented in loadtests/campaign.py.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from locust import FastHttpUser, HttpUser, between, events, task

from loadtests.campaign import BOTS, DESKTOP, MOBILE, Campaign, GroupState

CAMPAIGN = Campaign.load(Path(os.environ.get("LOADTEST_CAMPAIGN", "campaign.json")))
RESULTS = Path(os.environ.get("LOADTEST_RESULTS", "loadtest-results.json"))
responses: Counter[str] = Counter()  # code id → responses the edge gave (every one must be a scan)
statuses: Counter[int] = Counter()
stale: list[dict[str, Any]] = []
rerouted = 0


class ScannerUser(FastHttpUser):
    """Someone pointing a phone (or a crawler) at a printed code."""

    wait_time = between(0.0, 0.05)

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
        started = time.monotonic()
        with self.client.request(method, path, name=f"{method} /{{slug}}", allow_redirects=False,
                                 headers={"User-Agent": agent, "Host": CAMPAIGN.edge_host},
                                 catch_response=True) as response:
            statuses[response.status_code] += 1
            if response.status_code not in (302, 404):
                response.failure(f"unexpected status {response.status_code}")
                return
            responses[code_id] += 1
            seen = (response.status_code, response.headers.get("location"))
            allowed = [state.expected(visitor) for state in CAMPAIGN.acceptable(group_id, started)]
            if seen in allowed:
                response.success()  # a paused group's 404 is the right answer
            else:
                stale.append({"code": code_id, "group": group_id, "seen": seen, "allowed": allowed})
                response.failure(f"stale: got {seen}, expected one of {allowed}")


class AdminUser(HttpUser):
    """An admin working the campaign through the API while it is being scanned."""

    fixed_count = int(os.environ.get("LOAD_ADMINS", "1"))
    wait_time = between(CAMPAIGN.knobs.admin_wait / 2, CAMPAIGN.knobs.admin_wait * 1.5)
    host = CAMPAIGN.api

    def on_start(self) -> None:
        self.client.base_url = CAMPAIGN.api  # --host names the edge; admins talk to the API
        self.client.headers["Authorization"] = f"Bearer {CAMPAIGN.key}"
        self.rng = random.Random()

    def pick_group(self) -> str:
        return self.rng.choice(list(CAMPAIGN.groups))

    @task(3)
    def reroute_group(self) -> None:
        global rerouted
        group_id = self.pick_group()
        state = CAMPAIGN.groups[group_id]
        new = GroupState(f"https://menu.example.com/{group_id}/{time.time_ns()}", state.status, state.campaign)
        response = self.client.patch(f"/v1/qr-groups/{group_id}", json={"destination": {"url": new.url}},
                                     name="PATCH /v1/qr-groups/{id} (re-route)")
        if response.status_code == 200:
            CAMPAIGN.applied(group_id, new)
            rerouted += 1

    @task(1)
    def pause_or_resume_group(self) -> None:
        group_id = self.pick_group()
        state = CAMPAIGN.groups[group_id]
        new = GroupState(state.url, "inactive" if state.status == "active" else "active", state.campaign)
        response = self.client.patch(f"/v1/qr-groups/{group_id}", json={"status": new.status},
                                     name="PATCH /v1/qr-groups/{id} (pause/resume)")
        if response.status_code == 200:
            CAMPAIGN.applied(group_id, new)

    @task(3)
    def list_codes(self) -> None:
        self.client.get(f"/v1/qr-codes?group_id={self.pick_group()}&limit=50", name="GET /v1/qr-codes")

    @task(2)
    def rename_code(self) -> None:
        code_id = self.rng.choice(CAMPAIGN.codes)[0]
        self.client.patch(f"/v1/qr-codes/{code_id}", json={"name": f"renamed {time.time_ns()}"},
                          name="PATCH /v1/qr-codes/{id}")

    @task(2)
    def read_analytics(self) -> None:
        code_id = CAMPAIGN.codes[0][0]
        self.client.get(f"/v1/qr-codes/{code_id}/scans", name="GET /v1/qr-codes/{id}/scans")


@events.quitting.add_listener
def write_results(environment: Any, **_: Any) -> None:
    RESULTS.write_text(json.dumps({"responses": dict(responses), "statuses": dict(statuses), "stale": stale[:50],
                                   "stale_count": len(stale), "rerouted": rerouted,
                                   "failures": environment.stats.total.num_failures,
                                   "exceptions": len(environment.runner.exceptions) if environment.runner else 0}))
