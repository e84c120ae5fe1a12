"""`make fuzz-api`: schemathesis against the control plane's own /openapi.json.

Runs on a scratch stack (loadtests/stack.py). The exit status is schemathesis's: any 5xx, undocumented
status, wrong content type or schema violation fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from loadtests.stack import scratch_stack

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def main() -> int:
    with scratch_stack(("control-plane",), DEFAULT_DOMAIN="qr.fuzz.test") as stack:
        command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{stack.urls['api']}/openapi.json",
                   "--header", f"Authorization: Bearer {stack.key}", "--checks", CHECKS,
                   "--max-examples", os.environ.get("FUZZ_EXAMPLES", "25"), "--workers", "1",
                   "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
                   "--request-timeout", "10", "--seed", os.environ.get("FUZZ_SEED", "1")]
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
