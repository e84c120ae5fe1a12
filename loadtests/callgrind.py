"""A Python script's user-space instructions, counted by valgrind's callgrind (the same from run to run, whatever
else the machine does): what loadtests/protocol_instructions.py and loadtests/routing_instructions.py subtract to
get one request's or one scan's share."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def instructions_of(module: str, *args: str, out: Path) -> int:
    """`python -m module *args` under callgrind (a fixed hash seed, so dictionaries are laid out alike each run)."""
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", module,
                    *args], check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "1"})
    totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    assert totals, out
    return int(totals[1])
