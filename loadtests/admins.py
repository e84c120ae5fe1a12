"""Admins re-routing and pausing the campaign through the API while it is scanned (docs/loadtests.md).

Admins run as threads of the load-test driver, apart from the load generator's processes, so a saturated
generator cannot delay the moment a write is recorded. Each admin owns a share of the groups, and each
write is logged with the `version` the API returned: the accounting orders a group's states by version.
A write that does not get its 2xx is an answer outside the contract and fails the run.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import httpx

from loadtests.accounting import GroupState, Write
from loadtests.campaign import Campaign

TIMEOUT = 10.0


@dataclass
class Admin:
    campaign: Campaign
    groups: dict[str, tuple[int, GroupState]]
    stop: threading.Event
    writes: list[Write] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def run(self) -> None:
        with httpx.Client(base_url=self.campaign.api, timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {self.campaign.key}"}) as client:
            while not self.stop.wait(self.rng.uniform(0.5, 1.5) * self.campaign.knobs.admin_wait):
                group_id = self.rng.choice(list(self.groups))
                try:
                    if self.rng.random() < 0.75:
                        self.reroute(client, group_id)
                    else:
                        self.pause_or_resume(client, group_id)
                    self.browse(client, group_id)
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def reroute(self, client: httpx.Client, group_id: str) -> None:
        state = self.groups[group_id][1]
        url = f"https://menu.example.com/{group_id}/{time.time_ns()}"
        self.write(client, group_id, GroupState(url, state.status, state.campaign), {"destination": {"url": url}})

    def pause_or_resume(self, client: httpx.Client, group_id: str) -> None:
        state = self.groups[group_id][1]
        status = "inactive" if state.status == "active" else "active"
        self.write(client, group_id, GroupState(state.url, status, state.campaign), {"status": status})

    def write(self, client: httpx.Client, group_id: str, state: GroupState, body: dict[str, object]) -> None:
        sent = time.monotonic()
        response = client.patch(f"/v1/qr-groups/{group_id}", json=body)
        received = time.monotonic()
        if response.status_code != 200:
            self.failures.append(f"PATCH {group_id} → {response.status_code}: {response.text[:200]}")
            return
        # One admin owns each group, so its own count orders the writes where the API has no `version`.
        version = response.json().get("version", self.groups[group_id][0] + 1)
        self.groups[group_id] = (version, state)
        self.writes.append(Write(group_id, version, sent, received, state))

    def browse(self, client: httpx.Client, group_id: str) -> None:
        """Reads admins make between writes: lists and analytics, load on the API and PostgreSQL."""
        for path in (f"/v1/qr-codes?group_id={group_id}&limit=50", f"/v1/qr-groups/{group_id}/scans"):
            response = client.get(path)
            if response.status_code != 200:
                self.failures.append(f"GET {path} → {response.status_code}")


def start_admins(campaign: Campaign, count: int, stop: threading.Event) -> tuple[list[Admin], list[threading.Thread]]:
    """`count` admins, the groups dealt out between them, each on its own thread."""
    group_ids = list(campaign.groups)
    admins = [Admin(campaign, {g: campaign.groups[g] for g in group_ids[i::count]}, stop)
              for i in range(min(count, len(group_ids)))]
    threads = [threading.Thread(target=admin.run, name=f"admin-{i}", daemon=True) for i, admin in enumerate(admins)]
    for thread in threads:
        thread.start()
    return admins, threads
