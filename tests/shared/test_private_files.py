"""Secret files are owner-only from the moment they exist."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shared.private_files import write_private


def test_created_0600_whatever_the_umask_and_an_old_readable_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "services.env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_private(path, "REDIS_URL=redis://:secret@127.0.0.1:1/0\n")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "REDIS_URL=redis://:secret@127.0.0.1:1/0\n"
    assert [p.name for p in tmp_path.iterdir()] == ["services.env"]
