"""`make fuzz-api`: schemathesis against the control plane's own /openapi.json, every check, stateful phase on.

Runs on a scratch stack (loadtests/stack.py). The exit status is schemathesis's. The few places where the
API is right and the generator cannot know it are configured, each with its reason, in tests/schemathesis.toml;
one more is here: the document is fuzzed without its `Idempotency-Key` header. The generator reuses header
values across requests, and the same key with another body is a 422 by contract (docs/api.md §1), so every
schema-valid create would look refused. Keys and replays are tested in tests/control_plane/api/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from loadtests.stack import scratch_stack

CONFIG = Path(__file__).with_name("schemathesis.toml")


def without_idempotency_keys(spec: dict[str, Any]) -> dict[str, Any]:
    for operations in spec["paths"].values():
        for operation in operations.values():
            operation["parameters"] = [p for p in operation.get("parameters", []) if p["name"] != "Idempotency-Key"]
    return spec


def main() -> int:
    with scratch_stack(("control-plane",), DEFAULT_DOMAIN="qr.fuzz.test") as stack, \
            tempfile.TemporaryDirectory() as scratch:
        with urllib.request.urlopen(f"{stack.urls['api']}/openapi.json", timeout=10) as response:
            spec = without_idempotency_keys(json.load(response))
        schema = Path(scratch) / "openapi.json"
        schema.write_text(json.dumps(spec))
        command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run",
                   str(schema), "--url", stack.urls["api"], "--header", f"Authorization: Bearer {stack.key}",
                   "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                   "--max-examples", os.environ.get("FUZZ_EXAMPLES", "25"), "--workers", "1",
                   "--suppress-health-check", "all", "--request-timeout", "10",
                   "--seed", os.environ.get("FUZZ_SEED", "1")]
        return subprocess.run(command, timeout=1800).returncode


if __name__ == "__main__":
    sys.exit(main())
