"""The embedded default: private PostgreSQL and Redis servers started from the binaries on this machine.

Used by `scanroute up` and by the test suite when DATABASE_URL / REDIS_URL are not given. The servers are
children of the calling process with a parent-death signal, so they stop with it even when it is killed.
PostgreSQL refuses to run as root: as root, initdb and postgres run as the `postgres` system user (created
by the OS package) through `setpriv`, in a data folder that user owns.

Standard library only: `python3 -m shared.embedded check` runs before any virtualenv exists.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared.processes import spawn, stop

INSTALL_HINT = (
    "scanroute needs the PostgreSQL (>= 13) and Redis (>= 6.2) server binaries to start its private servers.\n"
    "  Debian/Ubuntu:  sudo apt-get install -y postgresql redis-server\n"
    "  Fedora:         sudo dnf install -y postgresql-server redis\n"
    "  macOS:          brew install postgresql redis\n"
    "or point DATABASE_URL and REDIS_URL at servers you already run."
)
START_TIMEOUT = 30.0


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


def missing_binaries() -> list[str]:
    return [name for name in ("initdb", "postgres", "pg_isready", "psql", "redis-server") if find_binary(name) is None]


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
    across restarts in the same folder.
    """

    def __init__(self, root: Path, *, persistent: bool) -> None:
        self.root = root
        self.persistent = persistent
        self.pg_port = free_port()
        self.redis_port = free_port()
        self._postgres: subprocess.Popen[bytes] | None = None
        self._redis: subprocess.Popen[bytes] | None = None

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/scanroute"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def __enter__(self) -> EmbeddedServices:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        missing = missing_binaries()
        if missing:
            raise EmbeddedError(f"missing {', '.join(missing)}.\n{INSTALL_HINT}")
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._start_postgres()
            self._start_redis()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._redis is not None:
            stop(self._redis, signal.SIGTERM)
            self._redis = None
        if self._postgres is not None:
            stop(self._postgres, signal.SIGINT)  # fast shutdown: disconnects clients, exits cleanly
            self._postgres = None

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
            initdb = [str(find_binary("initdb")), "-D", str(data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
            result = subprocess.run(_pg_argv(initdb), capture_output=True, text=True)
            if result.returncode != 0:
                raise EmbeddedError(f"initdb failed:\n{result.stdout}{result.stderr}")
        options = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                   "-c", "max_connections=300", "-c", "shared_buffers=128MB"]
        if not self.persistent:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.root / "postgres.log", "ab")
        self._postgres = spawn(_pg_argv([str(find_binary("postgres")), "-D", str(data),
                                         "-p", str(self.pg_port), *options]),
                               death_signal=signal.SIGINT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        isready = [str(find_binary("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(self.pg_port)]
        self._wait("postgres", self._postgres, lambda: subprocess.run(isready).returncode == 0)
        createdb = [str(find_binary("psql")), "-q", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U",
                    "postgres", "-d", "postgres", "-c", "CREATE DATABASE scanroute"]
        exists = [str(find_binary("psql")), "-tA", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U",
                  "postgres", "-d", "postgres", "-c", "SELECT 1 FROM pg_database WHERE datname='scanroute'"]
        if subprocess.run(exists, capture_output=True, text=True).stdout.strip() != "1":
            subprocess.run(createdb, check=True, capture_output=True)

    def _start_redis(self) -> None:
        folder = self.root / "redis"
        folder.mkdir(exist_ok=True)
        argv = [str(find_binary("redis-server")), "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--dir", str(folder), "--save", "", "--daemonize", "no", "--databases", "16",
                "--appendonly", "yes" if self.persistent else "no"]
        log = open(self.root / "redis.log", "ab")
        self._redis = spawn(argv, death_signal=signal.SIGTERM, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait("redis-server", self._redis, lambda: redis_answers(self.redis_port))

    def _wait(self, name: str, process: subprocess.Popen[bytes], ready: object) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedError(f"{name} exited with {process.returncode}; see {self.root}/{name}.log")
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise EmbeddedError(f"{name} did not accept connections within {START_TIMEOUT:.0f}s")


def redis_answers(port: int) -> bool:
    """Whether a redis-server on 127.0.0.1:`port` answers PING (no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def temporary_root(prefix: str = "scanroute-") -> Path:
    """A fresh folder that the postgres user can enter (mkdtemp makes it 0700)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def main(argv: list[str]) -> int:
    if argv[1:] == ["check"]:
        missing = missing_binaries()
        if missing:
            sys.stderr.write(f"missing: {', '.join(missing)}\n{INSTALL_HINT}\n")
            return 1
        return 0
    sys.stderr.write("usage: python -m shared.embedded check\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
