"""The embedded default: private PostgreSQL and Redis servers started from the binaries on this machine.

Used by `scanroute up` and by the test suite when DATABASE_URL / REDIS_URL are not given. The servers are
children of the calling process with a parent-death signal, so they stop with it even when it is killed.
Each runs in a session of its own: Ctrl-C in a terminal (SIGINT to the foreground process group) reaches
`scanroute up` and its children but not the servers, which `up` stops only after its children have finished
their in-flight work against them.
PostgreSQL refuses to run as root: as root, initdb and postgres run as the `postgres` system user (created
by the OS package) through `setpriv`, in a data folder that user owns.

Other local users get nothing (docs/security.md, "Embedded servers"): PostgreSQL authenticates with
scram-sha-256 and Redis with `requirepass`, both with passwords generated on first start and kept in
`credentials.env` (0600) under the root folder; data folders are 0700 and every file the servers write
is 0600 (they run with umask 077). Passwords go to the servers through files, never on a command line.

Standard library only: `python3 -m shared.embedded check` runs before any virtualenv exists.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from shared.private_files import write_private
from shared.processes import spawn, stop

INSTALL_HINT = (
    "scanroute needs the PostgreSQL (>= 13) and Redis (>= 6.2) server binaries to start its private servers.\n"
    "  Debian/Ubuntu:  sudo apt-get install -y postgresql redis-server\n"
    "  Fedora:         sudo dnf install -y postgresql-server redis\n"
    "  macOS:          brew install postgresql redis\n"
    "or point DATABASE_URL and REDIS_URL at servers you already run."
)
START_TIMEOUT = 30.0
OWNER_ONLY = 0o077  # umask of the servers: data and logs readable by their owner alone


class EmbeddedError(RuntimeError):
    pass


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key, reverse=True)
    candidates += [f"/usr/sbin/{name}", f"/usr/local/sbin/{name}"]
    return next((c for c in candidates if os.access(c, os.X_OK)), None)


def _version_key(path: str) -> tuple[int, ...]:
    version = path.split("/")[4]
    return tuple(int(p) for p in version.split(".") if p.isdigit())


POSTGRES_BINARIES = ("initdb", "postgres", "pg_isready", "psql")
REDIS_BINARIES = ("redis-server",)


def missing_binaries(*, postgres: bool = True, redis: bool = True) -> list[str]:
    """The binaries not found among those of the servers asked for."""
    wanted = (POSTGRES_BINARIES if postgres else ()) + (REDIS_BINARIES if redis else ())
    return [name for name in wanted if find_binary(name) is None]


def needed_servers(env: Mapping[str, str]) -> tuple[bool, bool]:
    """Whether PostgreSQL and Redis must be started privately: their URL is not given (as `scanroute up` and
    the test suite decide)."""
    return not env.get("DATABASE_URL"), not env.get("REDIS_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def as_root() -> bool:
    return os.geteuid() == 0


def _postgres_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise EmbeddedError(
            "running as root, PostgreSQL must run as an unprivileged user, and no 'postgres' user exists.\n"
            "Install the OS package (apt-get install postgresql) or run as a normal user."
        ) from None


def _pg_argv(argv: list[str]) -> list[str]:
    if not as_root():
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig", "INT", "--", *argv]


def reachable_by_postgres(folder: Path) -> bool:
    probe = subprocess.run(_pg_argv(["test", "-x", str(folder.parent)]), capture_output=True)
    return probe.returncode == 0


class EmbeddedServices:
    """A private PostgreSQL cluster and redis-server under `root`.

    `persistent=False` (tests) turns off fsync and Redis persistence; `True` (`scanroute up`) keeps data
    across restarts in the same folder. `postgres=False` or `redis=False` leaves that server out (its URL
    was given).
    """

    def __init__(self, root: Path, *, persistent: bool, postgres: bool = True, redis: bool = True) -> None:
        self.root = root
        self.persistent = persistent
        self.with_postgres = postgres
        self.with_redis = redis
        self.pg_port = free_port()
        self.redis_port = free_port()
        self._postgres: subprocess.Popen[bytes] | None = None
        self._redis: subprocess.Popen[bytes] | None = None
        self.pg_password = ""
        self.redis_password = ""

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres:{self.pg_password}@127.0.0.1:{self.pg_port}/scanroute"

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        missing = missing_binaries(postgres=self.with_postgres, redis=self.with_redis)
        if missing:
            raise EmbeddedError(f"missing {', '.join(missing)}.\n{INSTALL_HINT}")
        self.root.mkdir(parents=True, exist_ok=True)
        self._load_credentials()
        try:
            if self.with_postgres:
                self._start_postgres()
            if self.with_redis:
                self._start_redis()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.stop_redis()
        self.stop_postgres()

    # One server at a time, on the same port and data folder (the chaos suite restarts each under load).

    def stop_redis(self) -> None:
        """SIGTERM: Redis finishes its append-only file (when persistent) and exits."""
        if self._redis is not None:
            stop(self._redis, signal.SIGTERM)
            self._redis = None

    def start_redis(self) -> None:
        if self._redis is None:
            self._start_redis()

    def stop_postgres(self) -> None:
        """SIGINT: PostgreSQL's fast shutdown (`pg_ctl stop -m fast`): disconnects clients, exits cleanly."""
        if self._postgres is not None:
            stop(self._postgres, signal.SIGINT)
            self._postgres = None

    def start_postgres(self) -> None:
        if self._postgres is None:
            self._start_postgres()

    def reap(self) -> dict[str, int]:
        """The servers started here that have exited since (the OOM killer, a `kill -9`), by name ("postgres",
        "redis") with their exit status; start_postgres / start_redis start them again on the same port and data."""
        exited = {}
        if self._postgres is not None and self._postgres.poll() is not None:
            exited["postgres"], self._postgres = self._postgres.returncode, None
        if self._redis is not None and self._redis.poll() is not None:
            exited["redis"], self._redis = self._redis.returncode, None
        return exited

    def _load_credentials(self) -> None:
        path = self.root / "credentials.env"
        stored = dict(line.split("=", 1) for line in path.read_text().split()) if path.exists() else {}
        # URL-safe alphabet: the passwords go into DATABASE_URL / REDIS_URL unquoted.
        self.pg_password = stored.get("PG_PASSWORD") or secrets.token_urlsafe(24)
        self.redis_password = stored.get("REDIS_PASSWORD") or secrets.token_urlsafe(24)
        if not path.exists():
            write_private(path, f"PG_PASSWORD={self.pg_password}\nREDIS_PASSWORD={self.redis_password}\n")

    def _psql(self, sql: str, database: str = "postgres") -> subprocess.CompletedProcess[str]:
        argv = [str(find_binary("psql")), "-qtA", "-w", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                "-d", database, "-c", sql]
        return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": self.pg_password})

    def _initdb(self, data: Path) -> None:
        pwfile = self.root / ".initdb-password"
        write_private(pwfile, self.pg_password + "\n")
        if as_root():
            user = _postgres_user()
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            initdb = [str(find_binary("initdb")), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                      f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
            result = subprocess.run(_pg_argv(initdb), capture_output=True, text=True)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def _require_passwords(self, data: Path) -> None:
        """A cluster made by an older version trusts every local user: give it our password, then scram."""
        hba = data / "pg_hba.conf"
        lines = hba.read_text().splitlines(keepends=True)
        if not any(line.split()[-1:] == ["trust"] for line in lines if not line.lstrip().startswith("#")):
            return
        escaped = self.pg_password.replace("'", "''")
        self._psql(f"SET password_encryption = 'scram-sha-256'; ALTER USER postgres PASSWORD '{escaped}'")
        hba.write_text("".join(line.replace("trust", "scram-sha-256") if not line.lstrip().startswith("#")
                               else line for line in lines))
        if self._psql("SELECT pg_reload_conf()").returncode != 0:
            raise EmbeddedError("could not switch the existing PostgreSQL cluster to password authentication")

    def _start_postgres(self) -> None:
        data = self.root / "pgdata"
        if as_root():
            user = _postgres_user()
            data.mkdir(exist_ok=True)
            os.chown(data, user.pw_uid, user.pw_gid)
            os.chmod(data, 0o700)
            if not reachable_by_postgres(data):
                raise EmbeddedError(
                    f"the postgres user cannot reach {data} (a parent folder is not searchable by others);"
                    " run from a folder such as /srv or /tmp, or set DATABASE_URL"
                )
        if not (data / "PG_VERSION").exists():
            self._initdb(data)
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                   "-c", "max_connections=300", "-c", "shared_buffers=128MB",
                   "-c", "timezone=UTC"]  # not the host's zone (every connection asks for UTC anyway)
        if not self.persistent:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log_path = self.root / "postgres.log"
        log = _private_log(log_path)
        self._postgres = spawn(_pg_argv([str(find_binary("postgres")), "-D", str(data),
                                         "-p", str(self.pg_port), *options]),
                               death_signal=signal.SIGINT, umask=OWNER_ONLY, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        log.close()
        isready = [str(find_binary("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(self.pg_port)]
        self._wait("postgres", log_path, self._postgres, lambda: subprocess.run(isready).returncode == 0)
        self._require_passwords(data)
        if self._psql("SELECT 1 FROM pg_database WHERE datname='scanroute'").stdout.strip() != "1":
            created = self._psql("CREATE DATABASE scanroute")
            if created.returncode != 0:
                raise EmbeddedError(f"could not create the scanroute database:\n{created.stderr}")

    def _start_redis(self) -> None:
        folder = self.root / "redis"
        folder.mkdir(mode=0o700, exist_ok=True)
        _owner_only(folder)  # files an older version left readable
        config = self.root / "redis.conf"
        write_private(config, f"requirepass {self.redis_password}\n")
        argv = [str(find_binary("redis-server")), str(config), "--port", str(self.redis_port),
                "--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--daemonize", "no", "--databases", "16",
                "--appendonly", "yes" if self.persistent else "no"]
        log_path = self.root / "redis.log"
        log = _private_log(log_path)
        self._redis = spawn(argv, death_signal=signal.SIGTERM, umask=OWNER_ONLY, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._wait("redis-server", log_path, self._redis,
                   lambda: redis_answers(self.redis_port, self.redis_password))

    def _wait(self, name: str, log: Path, process: subprocess.Popen[bytes], ready: object) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedError(f"{name} exited with {process.returncode}; see {log}")
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise EmbeddedError(f"{name} did not accept connections within {START_TIMEOUT:.0f}s")


def redis_answers(port: int, password: str | None = None) -> bool:
    """Whether a redis-server on 127.0.0.1:`port` answers PING (no client library needed)."""
    auth = f"AUTH {password}\r\n".encode() if password else b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(auth + b"PING\r\n")
            reply = b""
            while reply.count(b"\r\n") < (2 if auth else 1) and len(reply) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
            return reply.endswith(b"+PONG\r\n")
    except OSError:
        return False


def _private_log(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def _owner_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)


def temporary_root(prefix: str = "scanroute-") -> Path:
    """A fresh folder that the postgres user can enter (mkdtemp makes it 0700)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o711)  # the postgres user may pass through, nobody may list
    return root


def main(argv: list[str]) -> int:
    if argv[1:] == ["check"]:  # the binaries of the servers whose URL is not set (`make system-deps`)
        postgres, redis = needed_servers(os.environ)
        missing = missing_binaries(postgres=postgres, redis=redis)
        if missing:
            sys.stderr.write(f"missing: {', '.join(missing)}\n{INSTALL_HINT}\n")
            return 1
        return 0
    sys.stderr.write("usage: python -m shared.embedded check\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
