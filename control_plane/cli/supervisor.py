"""`scanroute up`: private servers when no URLs are given, migrations, a demo key, then every process kind.

Children get a parent-death signal, so even a `kill -9` of the supervisor leaves nothing listening.
A child that exits is restarted with backoff (control_plane.cli.supervision); only Ctrl-C (or SIGTERM)
stops the stack: the children gracefully, then the private servers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from control_plane.cli.supervision import Child, Supervisor
from shared.embedded import EmbeddedError, EmbeddedServices, as_root, reachable_by_postgres
from shared.listen import LISTEN_FD_VAR, listen
from shared.private_files import write_private
from shared.processes import die_with_parent
from shared.settings import SERVICES_ENV, ControlPlaneSettings, EdgeSettings, load_environment

STATE = Path(".scanroute")
DEMO_KEY_FILE = STATE / "demo_key"
PROCESS_KINDS = ("control-plane", "edge", "ingest", "webhooks", "jobs")


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _data_root() -> Path:
    root = STATE.resolve()
    root.mkdir(exist_ok=True)
    if as_root() and not reachable_by_postgres(root / "pgdata"):
        # PostgreSQL runs as the postgres user, which cannot enter this folder (e.g. under /root).
        fallback = Path("/var/tmp") / f"scanroute-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"
        fallback.mkdir(mode=0o755, exist_ok=True)
        _say(f"note: {root} is not reachable by the postgres user; keeping database files in {fallback}")
        return fallback
    return root


def _scan_hash_secret(env: dict[str, str]) -> str:
    if env.get("SCAN_HASH_SECRET"):
        return env["SCAN_HASH_SECRET"]
    path = STATE / "scan_hash_secret"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


def _write_services_env(values: dict[str, str]) -> None:
    write_private(SERVICES_ENV, "".join(f"{k}={v}\n" for k, v in values.items()))


async def _prepare_database(database_url: str) -> str | None:
    """Migrate and make the demo organisation; returns a new demo key, or None if one exists."""
    from control_plane.cli.migrate import migrate
    from control_plane.services.keys import create_key, ensure_org
    from shared.database import connect

    conn = await connect(database_url)
    try:
        await migrate(conn)
        async with conn.transaction():
            org_id = await ensure_org(conn, "demo")
            if await conn.fetchval("SELECT 1 FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL", org_id):
                return None
            key = await create_key(conn, org_id, livemode=True,
                                   scopes=["qr:read", "qr:write", "webhooks:read", "webhooks:write", "keys:write"],
                                   name="demo")
            return key.secret
    finally:
        await conn.close()


STARTUP_WAIT = 60.0  # seconds for the HTTP processes to answer /healthz before "is up" is printed anyway


def _wait_until_serving(supervisor: Supervisor, urls: list[str], stopping: Callable[[], bool]) -> list[str]:
    """Polls each URL's /healthz (keeping the children supervised) until all answer or STARTUP_WAIT passes;
    returns those still silent."""
    waiting, deadline = list(urls), time.monotonic() + STARTUP_WAIT
    while waiting and time.monotonic() < deadline and not stopping():
        supervisor.check()
        for url in list(waiting):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    waiting.remove(url)
            except OSError:
                pass
        if waiting:
            time.sleep(0.2)
    return waiting


def _supervisor(env: dict[str, str], edge_socket: socket.socket) -> Supervisor:
    children = [Child(kind, [sys.executable, "-m", "control_plane.cli", kind], env) for kind in PROCESS_KINDS]
    for child in children:
        if child.kind == "edge":
            child.env = {**env, LISTEN_FD_VAR: str(edge_socket.fileno())}
            child.pass_fds = (edge_socket.fileno(),)
    return Supervisor(children, _say, STATE / "processes.json")


def run_stack() -> int:
    die_with_parent(signal.SIGTERM)
    env = load_environment(services=False)
    env.setdefault("PUBLIC_SCHEME", "http")  # a local stack serves plain HTTP
    STATE.mkdir(exist_ok=True)
    STATE.chmod(0o711)  # secrets inside are 0600; as root the postgres user must pass through to pgdata
    services: EmbeddedServices | None = None
    if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
        services = EmbeddedServices(_data_root(), persistent=True)
        try:
            services.start()
        except EmbeddedError as exc:
            _say(f"error: {exc}")
            return 1
        env["DATABASE_URL"], env["REDIS_URL"] = services.database_url, services.redis_url
        _say(f"started private PostgreSQL ({services.database_url}) and Redis ({services.redis_url})")
    env["SCAN_HASH_SECRET"] = _scan_hash_secret(env)
    _write_services_env({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SCAN_HASH_SECRET")})
    try:
        cp, edge = ControlPlaneSettings.from_env(env), EdgeSettings.from_env(env)
        # Held here for the life of the stack and handed to each edge process: connections that arrive while
        # the edge restarts wait in the backlog instead of being refused (shared/listen.py).
        edge_socket = listen(edge.bind)
    except BaseException as exc:
        if services is not None:
            services.stop()
        if not isinstance(exc, OSError):
            raise
        _say(f"error: cannot listen on {env.get('EDGE_BIND', 'the edge address')}: {exc}")
        return 1
    supervisor = _supervisor(env, edge_socket)
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        demo_key = asyncio.run(_prepare_database(env["DATABASE_URL"]))
        if demo_key:
            write_private(DEMO_KEY_FILE, demo_key + "\n")
        supervisor.start()
        silent = _wait_until_serving(supervisor, [f"http://{cp.bind[0]}:{cp.bind[1]}",
                                                  f"http://{edge.bind[0]}:{edge.bind[1]}"], lambda: stopping)
        for url in silent:
            _say(f"warning: {url} does not answer /healthz yet; see the log above")
        _say(f"\nscanroute is up\n  control plane  http://{cp.bind[0]}:{cp.bind[1]}  (API under /v1)\n"
             f"  edge           http://{edge.bind[0]}:{edge.bind[1]}  (short URLs on {edge.default_domain})\n"
             "  ingest worker  running\n  webhooks       dispatcher running\n"
             "  jobs           export/import worker running\n")
        if demo_key:
            _say(f"demo API key (shown once, also saved in {DEMO_KEY_FILE}):\n  {demo_key}\n")
        else:
            _say(f"demo API key: see {DEMO_KEY_FILE}, or make one with `scanroute keys create --org demo`\n")
        _say("press Ctrl-C to stop")
        while not stopping:
            supervisor.check()
            time.sleep(0.2)
    finally:
        supervisor.stop()
        edge_socket.close()
        if services is not None:
            services.stop()
            SERVICES_ENV.unlink(missing_ok=True)
        _say("stopped")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_stack())
