"""Files holding secrets are created owner-only, never written first and chmod-ed after.

Standard library only: the embedded launcher uses it before any virtualenv exists.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text`, mode 0600 from the moment the file exists (atomic rename)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask; this is not
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(partial, path)
