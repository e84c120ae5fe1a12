"""The `scanroute` commands' answers to operator mistakes and outages: one line and a non-zero exit, never a
traceback and never a wider key than asked for."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import ROOT
from tests.ports import free_port

DEADLINE = 60.0  # seconds a command may take on a loaded machine; a bound, not a measurement


def _scanroute(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run([sys.executable, "-m", "control_plane.cli", *args], cwd=cwd,
                          env={**base, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=DEADLINE)


def _nothing_listening() -> dict[str, str]:
    return {"DATABASE_URL": f"postgresql://postgres:nope@127.0.0.1:{free_port()}/scanroute",
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "SCAN_HASH_SECRET": "x" * 32}


async def test_keys_create_with_an_empty_scope_list_is_refused(env: dict[str, str], database_url: str,
                                                               tmp_path: Path) -> None:
    """`--scopes "$SCOPES"` with the variable empty must not mint a key with every scope (keys:write included)."""
    result = _scanroute(env, tmp_path, "keys", "create", "--org", "acme", "--scopes", "", "--json")
    assert result.returncode == 2 and "--scopes is empty" in result.stderr, result.stderr
    conn = await asyncpg.connect(database_url, timeout=10)
    try:
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
    finally:
        await conn.close()


@pytest.mark.parametrize("argv", [["migrate"], ["keys", "create", "--org", "x"], ["dead-letters", "list"]])
def test_an_unreachable_database_is_one_line_not_a_traceback(argv: list[str], tmp_path: Path) -> None:
    result = _scanroute(_nothing_listening(), tmp_path, *argv)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr[-1500:]


def test_an_edge_on_a_port_in_use_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _scanroute({**_nothing_listening(), "EDGE_BIND": f"127.0.0.1:{taken.getsockname()[1]}"},
                            tmp_path, "edge")
    assert result.returncode == 1, result.stderr
    assert "error: " in result.stderr and "in use" in result.stderr, result.stderr[-1500:]
    assert "Traceback" not in result.stderr, result.stderr[-1500:]


def test_a_url_as_default_domain_stops_the_control_plane_with_one_line(tmp_path: Path) -> None:
    result = _scanroute({**_nothing_listening(), "DEFAULT_DOMAIN": "https://qr.example.com",
                         "CONTROL_PLANE_BIND": f"127.0.0.1:{free_port()}"}, tmp_path, "control-plane")
    assert result.returncode == 2, result.stderr[-1500:]
    assert result.stderr.startswith("configuration error: DEFAULT_DOMAIN") and result.stderr.count("\n") == 1, \
        result.stderr[-1500:]


@pytest.mark.parametrize(("variable", "value"), [
    ("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:5432x/scanroute"),
    ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379x/0"),
])
def test_a_port_typo_in_a_store_url_is_one_line_not_a_traceback(variable: str, value: str, tmp_path: Path) -> None:
    result = _scanroute({**_nothing_listening(), variable: value}, tmp_path, "migrate")
    assert result.returncode == 2, result.stderr[-1500:]
    assert result.stderr.startswith(f"configuration error: {variable}") and result.stderr.count("\n") == 1, \
        result.stderr[-1500:]
    assert "hunter2" not in result.stderr


def test_a_geoip_db_that_is_no_maxmind_database_stops_the_edge_with_one_line(tmp_path: Path) -> None:
    not_a_database = tmp_path / "GeoLite2-Country.mmdb"
    not_a_database.write_text("<html>404 Not Found</html>\n")  # what a failed download leaves behind
    result = _scanroute({**_nothing_listening(), "GEOIP_DB": str(not_a_database),
                         "EDGE_BIND": f"127.0.0.1:{free_port()}", "EDGE_JOURNAL_DIR": str(tmp_path / "journal")},
                        tmp_path, "edge")
    assert result.returncode == 2, result.stderr[-1500:]
    assert result.stderr.startswith("configuration error: GEOIP_DB") and result.stderr.count("\n") == 1, \
        result.stderr[-1500:]


def test_a_cli_command_after_the_stack_stopped_says_to_start_it(tmp_path: Path) -> None:
    """README: the stack's data stays in .scanroute/ for the next run, but its private PostgreSQL and Redis run
    only while `make run` is up. A command run there meanwhile says so, not only that DATABASE_URL is unset."""
    (tmp_path / ".scanroute").mkdir()
    result = _scanroute({}, tmp_path, "keys", "create", "--org", "demo")
    assert result.returncode == 2, result.stderr
    first, hint = result.stderr.splitlines()
    assert first == "configuration error: DATABASE_URL: is required but not set"
    assert "only while `make run` (`scanroute up`) is up" in hint and "set DATABASE_URL and REDIS_URL" in hint
    elsewhere = _scanroute({}, tmp_path / ".scanroute", "keys", "create", "--org", "demo")
    assert elsewhere.stderr.splitlines() == [first]  # no .scanroute/ here: no hint about one
