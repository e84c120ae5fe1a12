"""`scanroute up`: a private server for each URL not given, migrations, a demo key, then every process kind.

Children get a parent-death signal, so even a `kill -9` of the supervisor leaves nothing listening.
A child that exits is restarted with backoff (control_plane.cli.supervision); only Ctrl-C (or SIGTERM)
stops the stack: the children gracefully, then the private servers (which run in sessions of their own, so
that Ctrl-C in a terminal does not reach them before the children are done with them).
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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from control_plane.cli.supervision import MAX_BACKOFF, STABLE_AFTER, Child, Supervisor, describe_exit
from shared.embedded import EmbeddedError, EmbeddedServices, as_root, reachable_by_postgres
from shared.listen import LISTEN_FD_VAR, listen
from shared.private_files import write_private
from shared.processes import Backoff, die_with_parent
from shared.settings import (
    SERVICES_ENV,
    ControlPlaneSettings,
    EdgeSettings,
    IngestSettings,
    JobSettings,
    WebhookSettings,
    load_environment,
)

STATE = Path(".scanroute")
DEMO_KEY_FILE = STATE / "demo_key"
PROCESS_KINDS = ("control-plane", "edge", "ingest", "webhooks", "jobs")


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _data_root(postgres: bool) -> Path:
    root = STATE.resolve()
    root.mkdir(exist_ok=True)
    if postgres and as_root() and not reachable_by_postgres(root / "pgdata"):
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


def _masked(url: str) -> str:
    """The URL with its password replaced by `***`: what `up` prints ends up in scrollback, CI logs and
    journald, and the generated passwords stay in 0600 files only (docs/security.md)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"))


def _start_private_servers(env: dict[str, str]) -> EmbeddedServices | None:
    """Starts a private server for DATABASE_URL and for REDIS_URL when each is unset, and puts its URL in
    `env`; a URL that is given is used as it is (docs/operations.md). Raises EmbeddedError."""
    postgres, redis = not env.get("DATABASE_URL"), not env.get("REDIS_URL")
    if not (postgres or redis):
        return None
    services = EmbeddedServices(_data_root(postgres), persistent=True, postgres=postgres, redis=redis)
    services.start()
    started = []
    if postgres:
        env["DATABASE_URL"] = services.database_url
        started.append(f"PostgreSQL ({_masked(services.database_url)})")
    if redis:
        env["REDIS_URL"] = services.redis_url
        started.append(f"Redis ({_masked(services.redis_url)})")
    _say(f"started private {' and '.join(started)}; passwords in {SERVICES_ENV}")
    return services


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


def _stop_private_servers(services: EmbeddedServices | None) -> None:
    """After the children: their URLs in services.env go with them."""
    if services is not None:
        services.stop()
        SERVICES_ENV.unlink(missing_ok=True)


def _prepare_database_patiently(database_url: str, stopping: Callable[[], bool]) -> str | None:
    """_prepare_database, retried with backoff while PostgreSQL cannot be reached (it may still be starting:
    no process exits because a store is down, docs/operations.md); gives up only when the stack is stopped."""
    from shared.unavailable import STORE_UNAVAILABLE

    backoff = Backoff(first=0.5, longest=5.0)
    where = urlsplit(database_url).netloc.rpartition("@")[2]
    while True:
        try:
            return asyncio.run(_prepare_database(database_url))
        except STORE_UNAVAILABLE as exc:
            delay = backoff.next_delay()
            _say(f"warning: PostgreSQL at {where} is not reachable ({str(exc) or type(exc).__name__}); "
                 f"retrying in {delay:g} s")
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if stopping():
                return None
            time.sleep(0.05)


STARTUP_WAIT = 60.0  # seconds for the HTTP processes to answer /healthz before "is up" is printed anyway


def _wait_until_serving(check: Callable[[], None], urls: list[str], stopping: Callable[[], bool]) -> list[str]:
    """Polls each URL's /healthz (calling `check`, which keeps everything supervised) until all answer or
    STARTUP_WAIT passes; returns those still silent."""
    waiting, deadline = list(urls), time.monotonic() + STARTUP_WAIT
    while waiting and time.monotonic() < deadline and not stopping():
        check()
        for url in list(waiting):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    waiting.remove(url)
            except OSError:
                pass
        if waiting:
            time.sleep(0.2)
    return waiting


def _say_up(cp: ControlPlaneSettings, edge: EdgeSettings, silent: list[str], demo_key: str | None) -> None:
    for url in silent:
        _say(f"warning: {url} does not answer /healthz yet; see the log above")
    _say(f"\nscanroute is up\n  control plane  http://{cp.bind[0]}:{cp.bind[1]}  (API under /v1)\n"
         f"  edge           http://{edge.bind[0]}:{edge.bind[1]}  (short URLs on {edge.default_domain})\n"
         "  ingest worker  running\n  webhooks       dispatcher running\n"
         "  jobs           export/import worker running\n")
    if demo_key:
        _say(f"demo API key (shown once, also saved in {DEMO_KEY_FILE}):\n  {demo_key}\n")
    elif DEMO_KEY_FILE.exists():
        _say(f"demo API key: see {DEMO_KEY_FILE}, or make one with `scanroute keys create --org demo`\n")
    else:
        # The demo organisation had a key already (this DATABASE_URL was used from another folder, or
        # .scanroute/ was deleted): it was shown once where it was made, and is not in this folder.
        _say(f"demo API key: the demo organisation already has one, made elsewhere (not in {DEMO_KEY_FILE});\n"
             "  make one with `scanroute keys create --org demo` while the stack is up\n")
    _say("press Ctrl-C to stop")


SERVER_NAMES = {"postgres": "PostgreSQL", "redis": "Redis"}


@dataclass
class _PrivateServerWatch:
    """Restarts a private server that died under the stack (the OOM killer, a `kill -9`) on its port and data,
    with the children's backoff and a line on the output each time (docs/operations.md, "Supervision"): the
    stack must not stay degraded until someone restarts `up`."""

    services: EmbeddedServices | None  # None: no private server to watch (both URLs given)
    due: dict[str, float] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    backoffs: dict[str, Backoff] = field(default_factory=dict)

    def check(self) -> None:
        if self.services is None:
            return
        now = time.monotonic()
        for name, code in self.services.reap().items():
            backoff = self.backoffs.setdefault(name, Backoff(first=0.5, longest=MAX_BACKOFF))
            if now - self.started.get(name, -STABLE_AFTER) >= STABLE_AFTER:
                backoff.reset()  # it had been up a while: a first failure again
            delay = backoff.next_delay()
            self.due[name] = now + delay
            _say(f"warning: private {SERVER_NAMES[name]} exited with {describe_exit(code)}; "
                 f"restarting in {delay:g} s")
        for name, at in list(self.due.items()):
            if now >= at:
                self._restart(name)

    def _restart(self, name: str) -> None:
        assert self.services is not None
        start, stop = ((self.services.start_postgres, self.services.stop_postgres) if name == "postgres"
                       else (self.services.start_redis, self.services.stop_redis))
        try:
            start()
        except EmbeddedError as exc:
            stop()
            delay = self.backoffs[name].next_delay()
            self.due[name] = time.monotonic() + delay
            _say(f"warning: private {SERVER_NAMES[name]} did not start again ({exc}); retrying in {delay:g} s")
            return
        del self.due[name]
        self.started[name] = time.monotonic()
        _say(f"restarted private {SERVER_NAMES[name]}")


STOP_MARGIN_S = 5.0  # beyond a child's own drain deadline: its start-up of the shutdown, closing its pools


def stop_timeouts(env: dict[str, str]) -> dict[str, float]:
    """Seconds each child gets from SIGTERM to SIGKILL: its own drain deadline (`stop_deadline`, read from the
    same variables it reads) plus STOP_MARGIN_S, so that `up` never cuts a graceful stop short
    (docs/operations.md, "Stopping")."""
    deadlines = {"control-plane": ControlPlaneSettings.from_env(env).stop_deadline,
                 "edge": EdgeSettings.from_env(env).stop_deadline,
                 "ingest": IngestSettings.from_env(env).stop_deadline,
                 "webhooks": WebhookSettings.from_env(env).stop_deadline,
                 "jobs": JobSettings.from_env(env).stop_deadline}
    return {kind: deadlines[kind] + STOP_MARGIN_S for kind in PROCESS_KINDS}


def _supervisor(env: dict[str, str], edge_socket: socket.socket) -> Supervisor:
    timeouts = stop_timeouts(env)
    children = [Child(kind, [sys.executable, "-m", "control_plane.cli", kind], env, stop_timeout=timeouts[kind])
                for kind in PROCESS_KINDS]
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
    try:
        services = _start_private_servers(env)
    except EmbeddedError as exc:
        _say(f"error: {exc}")
        return 1
    env["SCAN_HASH_SECRET"] = _scan_hash_secret(env)
    _write_services_env({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SCAN_HASH_SECRET")})
    try:
        cp, edge = ControlPlaneSettings.from_env(env), EdgeSettings.from_env(env)
        # Every child's variables before any child starts: a malformed one stops `up` with its name, instead
        # of "scanroute is up" and a child that crashes forever.
        for worker_settings in (IngestSettings, WebhookSettings, JobSettings):
            worker_settings.from_env(env)
        # Held here for the life of the stack and handed to each edge process: connections that arrive while
        # the edge restarts wait in the backlog instead of being refused (shared/listen.py).
        edge_socket = listen(edge.bind)
    except BaseException as exc:
        _stop_private_servers(services)
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
        demo_key = _prepare_database_patiently(env["DATABASE_URL"], lambda: stopping)
        if stopping:
            return 0
        if demo_key:
            write_private(DEMO_KEY_FILE, demo_key + "\n")
        watch = _PrivateServerWatch(services)

        def check() -> None:
            supervisor.check()
            watch.check()

        supervisor.start()
        silent = _wait_until_serving(check, [f"http://{cp.bind[0]}:{cp.bind[1]}",
                                             f"http://{edge.bind[0]}:{edge.bind[1]}"], lambda: stopping)
        _say_up(cp, edge, silent, demo_key)
        while not stopping:
            check()
            time.sleep(0.2)
    finally:
        supervisor.stop()
        edge_socket.close()
        _stop_private_servers(services)
        _say("stopped")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_stack())
