"""Seeding a campaign through the public API: groups, then their codes minted 10,000 per request.

    python -m loadtests.seed --api http://127.0.0.1:8000 --key qr_live_… --edge-host 127.0.0.1:8080 \
        --out campaign.json          # knobs from the environment (see loadtests/campaign.py)

1,000,000 codes are 100 mint requests: minutes, not hours.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import httpx

from loadtests.accounting import GroupState
from loadtests.campaign import Campaign, Knobs

MINT_BATCH = 10_000


def seed(api: str, key: str, edge_host: str, knobs: Knobs) -> Campaign:
    codes: list[tuple[str, str, str]] = []
    groups: dict[str, tuple[int, GroupState]] = {}
    with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        for number in range(knobs.groups):
            state = GroupState(f"https://menu.example.com/run-{number}", "active", f"run{number}")
            response = client.post("/v1/qr-groups", json={
                "name": f"Print run {number}", "status": "active", "destination": {"type": "url", "url": state.url},
                "url_params": {"utm_campaign": state.campaign}})
            response.raise_for_status()
            group = response.json()
            group_id = group["id"]
            groups[group_id] = (group.get("version", 0), state)
            wanted = knobs.codes // knobs.groups + (number < knobs.codes % knobs.groups)
            while wanted > 0:
                batch = min(wanted, MINT_BATCH)
                minted = client.post(f"/v1/qr-groups/{group_id}/codes",
                                     json={"count": batch, "name_prefix": f"Run {number} card "})
                minted.raise_for_status()
                codes += [(c["id"], c["slug"], group_id) for c in minted.json()["data"]]
                wanted -= batch
    random.Random(7).shuffle(codes)  # popularity is not creation order
    return Campaign(api, edge_host, key, groups, codes, knobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--edge-host", required=True, help="the Host header short URLs use")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    campaign = seed(args.api, args.key, args.edge_host, Knobs.from_env())
    campaign.save(args.out)
    print(f"seeded {len(campaign.codes)} codes in {len(campaign.groups)} groups "
          f"in {time.monotonic() - started:.1f} s → {args.out}")


if __name__ == "__main__":
    main()
