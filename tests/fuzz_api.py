"""`make fuzz-api`: schemathesis against the control plane's own /openapi.json.

Starts private servers (unless DATABASE_URL/REDIS_URL are given), a migrated scratch database, a key with
every scope and the control plane on a free port; runs schemathesis; removes the scratch database.
Exit status is schemathesis's: any 5xx, schema violation or non-problem error fails the run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import asyncpg

from control_plane.auth import SCOPES, create_key, ensure_org
from control_plane.migrate import migrate
from shared.embedded import EmbeddedServices, free_port, temporary_root
from shared.processes import spawn, stop
from tests.conftest import with_database

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


async def prepare(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, name))
    try:
        await migrate(conn)
        org_id = await ensure_org(conn, "fuzz")
        return (await create_key(conn, org_id, livemode=True, scopes=list(SCOPES))).secret
    finally:
        await conn.close()


async def drop(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def main() -> int:
    with ExitStack() as cleanup:
        database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        if not (database_url and redis_url):
            services = EmbeddedServices(temporary_root("scanroute-fuzz-"), persistent=False)
            cleanup.callback(shutil.rmtree, services.root, True)
            cleanup.enter_context(services)
            database_url, redis_url = services.database_url, services.redis_url
        name = f"scanroute_fuzz_{secrets.token_hex(4)}"
        key = asyncio.run(prepare(database_url, name))
        cleanup.callback(lambda: asyncio.run(drop(database_url, name)))
        port = free_port()
        env = {**os.environ, "DATABASE_URL": with_database(database_url, name), "REDIS_URL": redis_url,
               "REDIS_NAMESPACE": f"fuzz{secrets.token_hex(4)}", "CONTROL_PLANE_BIND": f"127.0.0.1:{port}",
               "DEFAULT_DOMAIN": "qr.fuzz.test", "RATE_LIMIT_PER_SECOND": "100000", "RATE_LIMIT_BURST": "100000"}
        server = spawn([sys.executable, "-m", "control_plane.cli", "control-plane"], env=env)
        cleanup.callback(stop, server, signal.SIGTERM)
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/openapi.json",
                   "--header", f"Authorization: Bearer {key}", "--checks", CHECKS,
                   "--max-examples", os.environ.get("FUZZ_EXAMPLES", "25"), "--workers", "1",
                   "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
                   "--request-timeout", "10", "--seed", os.environ.get("FUZZ_SEED", "1")]
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
