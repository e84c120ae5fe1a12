"""Instructions per scan of what a code's rules and split add to it (`python -m loadtests.routing_instructions`):
the decision (`EdgeApp.decide`) on the scan's facts on `make bench-edge` case (e)'s group (20 rules of
every kind, none matching the benchmark's iPhone, then a 50/50 split), counted by valgrind's callgrind
(BENCHMARKS.md, "Edge").

As loadtests/protocol_instructions.py does, the script runs itself under callgrind with N and 2N scans:
(count(2N) - count(N)) / N is one scan's share, whatever start-up costs; once more without the decision, which
is subtracted (the loop and the facts every scan builds). Each scan decodes its user agent and
`Accept-Language` from bytes, as the edge does, so no string's hash is remembered from the scan before.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from loadtests.bench_edge import BENCH_RULES, PHONE
from loadtests.callgrind import instructions_of
from shared.params import LocationTemplate
from shared.routing import compile_routing
from shared.scan_plan import ScanPlan
from shared.validity import Validity

RULES = [{"if": c, "destination": {"type": "url", "url": f"https://example.com/rule{n}"}}
         for n, c in enumerate(BENCH_RULES)]
SPLIT = [{"weight": 50, "destination": {"type": "url", "url": f"https://example.com/{v}?lang=en"}} for v in "ab"]


def scans(count: int, decide: bool = True) -> None:
    """`count` scans of case (e)'s visitor; without `decide`, only what every scan does anyway (its facts)."""
    routing = compile_routing((), None, "qr_r1", RULES, SPLIT, "grp_rules", inherits=True)
    assert routing is not None
    default = LocationTemplate.build("https://example.com/menu", (), ())
    plan = ScanPlan(Validity.from_json({}), False, None, routing, (None,) * len(RULES), (None, None), None, default)
    route = plan.route
    assert route is not None
    agent, languages = PHONE.encode(), b"de-DE,de;q=0.9,en;q=0.8"
    variants = 0
    for _ in range(count):
        facts = (agent.decode("latin-1"), languages.decode("latin-1"), None, "0f" * 16, "1e" * 16)
        if decide:
            # What EdgeApp.decide does for a plan that only routes
            decision, _, _ = plan.answers[route(facts, b"qr=1&utm_source=bench", "198.51.100.23", time.time())]
            variants += decision.variant is not None
    assert variants == (count if decide else 0), "the benchmark's visitor reaches the split"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=3000, help="N")
    parser.add_argument("--run", nargs=2, help=argparse.SUPPRESS)  # the measured child: mode, count
    args = parser.parse_args()
    if args.run is not None:
        return scans(int(args.run[1]), args.run[0] == "decide")
    per_scan = {}
    with tempfile.TemporaryDirectory(prefix="scanroute-routing-") as folder:
        for mode in ("baseline", "decide"):
            once, twice = (instructions_of("loadtests.routing_instructions", "--run", mode, str(n),
                                           out=Path(folder) / f"callgrind.{mode}.{n}")
                           for n in (args.scans, 2 * args.scans))
            per_scan[mode] = (twice - once) / args.scans
    print(f"rules and split of case (e): {per_scan['decide'] - per_scan['baseline']:,.0f} instructions per scan "
          f"({per_scan['decide']:,.0f} with the loop and the scan's facts, {per_scan['baseline']:,.0f} without "
          f"the decision; callgrind, (2N - N) / N, N = {args.scans:,})")


if __name__ == "__main__":
    main()
