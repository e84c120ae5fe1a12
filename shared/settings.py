"""Typed settings, one object per process kind, read once from the environment at start-up."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from dotenv import dotenv_values

from shared.geo import unreadable
from shared.hostnames import InvalidHostname, needs_idna, stored_hostname

SERVICES_ENV = Path(".scanroute") / "services.env"
# How long each process may still be finishing what it has in hand after SIGTERM (docs/operations.md,
# "Stopping"). Whatever stops it — `scanroute up`, Compose's `stop_grace_period`, Kubernetes'
# `terminationGracePeriodSeconds` — must wait longer before SIGKILL, or that work is cut: webhook deliveries
# already sent go unrecorded and are sent again, scans an edge had taken wait in its journal.
CONTROL_PLANE_SHUTDOWN_S = 10.0  # requests in flight (uvicorn's timeout_graceful_shutdown)
EDGE_FLUSH_S = 5.0  # after the drain: the scan batches in flight, then as long again for a journal replay
WEBHOOK_RECORD_S = 15.0  # after the sends in flight (up to the delivery timeout): recording what they did
# The ingest worker's batch in hand, the job worker's release of its job: no timer bounds them, and each is
# one PostgreSQL transaction or statement, normally well under a second.
WORKER_STOP_S = 10.0


class ConfigError(Exception):
    """A required variable is missing or malformed; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class Secret(str):
    """A string whose repr never shows its value."""

    def __repr__(self) -> str:
        return "Secret('**********')"


def load_environment(cwd: Path | None = None, *, services: bool = True) -> dict[str, str]:
    """Process environment over `.env` over `.scanroute/services.env` (written by `scanroute up`)."""
    base = cwd or Path.cwd()
    merged: dict[str, str] = {}
    for path in ((base / SERVICES_ENV) if services else None, base / ".env"):
        if path is None:
            continue
        if path.is_file():
            merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str | None = None) -> str:
        value = self.env.get(name, "").strip()
        if value:
            return value
        if default is None:
            raise ConfigError(name, "is required but not set")
        return default

    def url(self, name: str, schemes: tuple[str, ...]) -> Secret:
        value = self.text(name)
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise ConfigError(name, f"must be a {' or '.join(schemes)} URL, got {parts.scheme!r}")
        if parts.scheme == "unix":  # unix:///run/redis/redis.sock: a socket has a path, not a host
            if not parts.path.startswith("/"):
                raise ConfigError(name, "a unix URL must name the socket's absolute path (unix:///run/redis.sock)")
        elif not parts.hostname:
            raise ConfigError(name, f"must be a {parts.scheme} URL with a host")
        try:  # a typo ("5432x") or a port past 65535, which the drivers take modulo 65536
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:  # the value is not shown: the URL may carry a password
            raise ConfigError(name, "has a port that is no number from 1 to 65535")
        return Secret(value)

    def public_url(self, name: str, default: str) -> str:
        value = self.text(name, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(name, f"must be an http or https URL such as https://qr-admin.example.com, got {value!r}")
        return value

    def bind(self, name: str, default: str) -> tuple[str, int]:
        value = self.text(name, default)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(name, f"must be host:port, got {value!r}")
        return host.strip("[]"), int(port)

    def optional_bind(self, name: str) -> tuple[str, int] | None:
        """host:port, or None when the variable is unset or empty (the feature is off)."""
        return self.bind(name, "") if self.env.get(name, "").strip() else None

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self.text(name, str(default))
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
        if number < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {number}")
        return number

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self.text(name, str(default))
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, f"must be a number, got {value!r}") from None
        if not math.isfinite(number):  # float() reads "inf" and "nan", and nan passes every comparison
            raise ConfigError(name, f"must be a finite number, got {value!r}")
        if number < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {number}")
        return number

    def choice(self, name: str, default: str, options: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in options:
            raise ConfigError(name, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.text(name, "true" if default else "false").lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {value!r}")

    def networks(self, name: str, default: str = "-") -> tuple[IPv4Network | IPv6Network, ...]:
        value = self.text(name, default)
        if value == "-":
            return ()
        try:
            return tuple(ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
        except ValueError as exc:
            raise ConfigError(name, f"must be comma-separated CIDRs or addresses: {exc}") from None

    def template(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if "{id}" not in value or urlsplit(value).scheme not in ("http", "https"):
            raise ConfigError(name, f"must be an http(s) URL containing {{id}}, got {value!r}")
        return value

    def secret(self, name: str, min_length: int = 16) -> Secret:
        value = self.text(name)
        if len(value) < min_length:
            raise ConfigError(name, f"must be at least {min_length} characters")
        return Secret(value)


_DEFAULT_TEMPLATES = {"page": "https://pages.example.com/p/{id}", "chatbot": "https://chat.example.com/c/{id}",
                      "knowledge_base": "https://kb.example.com/k/{id}"}


@dataclass(frozen=True, slots=True)
class Templates:
    """How page/chatbot/knowledge_base destinations become URLs (docs/api.md §3.1.6)."""

    page: str = _DEFAULT_TEMPLATES["page"]
    chatbot: str = _DEFAULT_TEMPLATES["chatbot"]
    knowledge_base: str = _DEFAULT_TEMPLATES["knowledge_base"]

    @classmethod
    def read(cls, r: _Reader) -> Templates:
        return cls(
            page=r.template("PAGE_URL_TEMPLATE", _DEFAULT_TEMPLATES["page"]),
            chatbot=r.template("CHATBOT_URL_TEMPLATE", _DEFAULT_TEMPLATES["chatbot"]),
            knowledge_base=r.template("KNOWLEDGE_BASE_URL_TEMPLATE", _DEFAULT_TEMPLATES["knowledge_base"]),
        )


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """Where requests made on a user's behalf may go (docs/api.md §0): https only, public addresses only."""

    allowed_hosts: frozenset[str] = frozenset()
    allow_http: bool = False

    @classmethod
    def read(cls, r: _Reader) -> OutboundSettings:
        hosts = r.text("OUTBOUND_ALLOWED_HOSTS", "")
        return cls(allowed_hosts=frozenset(h.strip().lower() for h in hosts.split(",") if h.strip()),
                   allow_http=r.flag("WEBHOOK_ALLOW_HTTP"))


@dataclass(frozen=True, slots=True)
class Stores:
    database_url: Secret
    redis_url: Secret
    redis_namespace: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Stores:
        return cls.read(_Reader(load_environment() if env is None else env))

    @classmethod
    def read(cls, r: _Reader) -> Stores:
        namespace = r.text("REDIS_NAMESPACE", "sr")
        if not namespace.replace("-", "").replace("_", "").isalnum():
            raise ConfigError("REDIS_NAMESPACE", f"must be letters, digits, - or _, got {namespace!r}")
        return cls(
            database_url=r.url("DATABASE_URL", ("postgres", "postgresql")),
            redis_url=r.url("REDIS_URL", ("redis", "rediss", "unix")),
            redis_namespace=namespace,
        )


def _percent(r: _Reader, name: str, default: float) -> float:
    value = r.number(name, default)
    if value > 100:
        raise ConfigError(name, f"must be a percentage from 0 to 100, got {value:g}")
    return value


# What a phone sends in `Host` for a printed code: a DNS name or an IPv4 address, or an IPv6 literal in brackets,
# perhaps with a port; no scheme, path or space (the edge matches Host and slug exactly: docs/operations.md).
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"({_LABEL}(\.{_LABEL})*|\[[0-9a-f:.]+\])(:(?P<port>[0-9]{{1,5}}))?")


def _public(r: _Reader, edge_bind: tuple[str, int]) -> tuple[str, str]:
    """DEFAULT_DOMAIN, by default the edge's bind address as a Host header names it: an IPv6 literal in
    brackets (`[::1]:8080`), else short URLs would not be URLs."""
    host, port = edge_bind
    bind_host = f"[{host}]" if ":" in host else host
    default_domain = r.text("DEFAULT_DOMAIN", f"{bind_host}:{port}").lower()
    if needs_idna(default_domain):  # in A-labels, as phones send it and domains are stored (docs/api.md §2.3)
        name, colon, port_text = default_domain.partition(":")
        try:  # as leniently as stored names: a default domain of an earlier release is never refused (xn--i-7iq.ws)
            default_domain = stored_hostname(name) + colon + port_text
        except InvalidHostname as exc:
            raise ConfigError("DEFAULT_DOMAIN", f"is no valid host name ({exc}), got {default_domain!r}") from None
    matched = _HOST.fullmatch(default_domain)
    if matched is None or not 0 < int(matched["port"] or 443) < 65536:
        raise ConfigError("DEFAULT_DOMAIN", "must be the host of short URLs as phones send it, a port perhaps"
                          f" (qr.example.com, qr.example.com:8080): no scheme or path, got {default_domain!r}")
    return default_domain, r.choice("PUBLIC_SCHEME", "https", ("https", "http"))


class _FromEnv:
    __slots__ = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        return cls.read(_Reader(load_environment() if env is None else env))  # type: ignore[attr-defined, no-any-return]


# The proxies the control plane believes by default: one on the same host (uvicorn's own default is 127.0.0.1).
CONTROL_PLANE_TRUSTED_PROXIES = "127.0.0.1, ::1"


@dataclass(frozen=True, slots=True)
class ControlPlaneSettings(_FromEnv):
    stores: Stores
    bind: tuple[str, int]
    default_domain: str
    public_scheme: str
    public_url: str  # scheme and host (and any path prefix) of this API as clients reach it: absolute image URLs
    templates: Templates = field(default_factory=Templates)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    # Per client address: requests without a key or with a key that failed, and the public image routes.
    address_rate_limit_per_second: float = 50.0
    address_rate_limit_burst: int = 200
    webhook_endpoints_live: int = 16  # endpoints per organisation in live mode
    webhook_endpoints_test: int = 3  # and in test mode, whose events are free
    cache_sync_interval: float = 1.0  # seconds; 0 turns the outbox repair loop off
    request_read_timeout: float = 10.0  # seconds a client has to send a request's headers (and each body pause)
    max_connections: int = 1000  # concurrent connections and requests; more get a 503
    # Keys the content-addressed image URLs, so that nobody can compute a code's image URL. Unset: the
    # control plane uses the secret generated in the database at migration (control_plane.render.images).
    image_url_secret: Secret | None = None
    # Export files live in PostgreSQL unless a directory that every control-plane process shares is given.
    export_dir: Path | None = None
    export_ttl_hours: float = 24.0  # how long a finished export's file is kept and its signed URL valid
    # Peers whose X-Forwarded-For and X-Forwarded-Proto uvicorn believes (docs/operations.md): the client
    # address that sign-in throttles and address rate limits count, and the scheme. Loopback by default.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = tuple(
        ip_network(n) for n in CONTROL_PLANE_TRUSTED_PROXIES.split(", "))

    @property
    def secure_cookies(self) -> bool:
        """The operator says clients reach the control plane over https: cookies are `Secure` whatever
        scheme a request arrived with (a TLS-terminating proxy not trusted, docs/dashboard.md)."""
        return self.public_url.startswith("https://")

    @property
    def forwarded_allow_ips(self) -> list[str]:
        """`trusted_proxies` as uvicorn's `forwarded_allow_ips` takes them (CIDRs, host bits cleared)."""
        return [str(network) for network in self.trusted_proxies]

    @property
    def stop_deadline(self) -> float:
        """Seconds after SIGTERM until the process has exited (see CONTROL_PLANE_SHUTDOWN_S)."""
        return CONTROL_PLANE_SHUTDOWN_S

    @classmethod
    def read(cls, r: _Reader) -> ControlPlaneSettings:
        edge_bind = r.bind("EDGE_BIND", "127.0.0.1:8080")
        default_domain, scheme = _public(r, edge_bind)
        bind = r.bind("CONTROL_PLANE_BIND", "127.0.0.1:8000")
        host = f"[{bind[0]}]" if ":" in bind[0] else bind[0]
        export_dir = r.text("EXPORT_DIR", "-")
        return cls(
            stores=Stores.read(r),
            bind=bind,
            default_domain=default_domain,
            public_scheme=scheme,
            public_url=r.public_url("CONTROL_PLANE_PUBLIC_URL", f"http://{host}:{bind[1]}"),
            templates=Templates.read(r),
            outbound=OutboundSettings.read(r),
            rate_limit_per_second=r.number("RATE_LIMIT_PER_SECOND", 100.0, minimum=0.001),
            rate_limit_burst=r.integer("RATE_LIMIT_BURST", 200, minimum=1),
            address_rate_limit_per_second=r.number("ADDRESS_RATE_LIMIT_PER_SECOND", 50.0, minimum=0.001),
            address_rate_limit_burst=r.integer("ADDRESS_RATE_LIMIT_BURST", 200, minimum=1),
            webhook_endpoints_live=r.integer("WEBHOOK_ENDPOINTS_PER_ORG", 16, minimum=1),
            webhook_endpoints_test=r.integer("WEBHOOK_TEST_ENDPOINTS_PER_ORG", 3, minimum=1),
            cache_sync_interval=r.number("CACHE_SYNC_INTERVAL", 1.0, minimum=0.0),
            request_read_timeout=r.number("CONTROL_PLANE_READ_TIMEOUT", 10.0, minimum=0.1),
            max_connections=r.integer("CONTROL_PLANE_MAX_CONNECTIONS", 1000, minimum=1),
            image_url_secret=r.secret("IMAGE_URL_SECRET") if r.env.get("IMAGE_URL_SECRET", "").strip() else None,
            export_dir=None if export_dir == "-" else Path(export_dir),
            export_ttl_hours=r.number("EXPORT_TTL_HOURS", 24.0, minimum=24.0),
            trusted_proxies=r.networks("CONTROL_PLANE_TRUSTED_PROXIES", CONTROL_PLANE_TRUSTED_PROXIES),
        )


# Loopback and the private networks (RFC 1918, RFC 4193): where a monitoring system usually scrapes from.
PRIVATE_NETWORKS = "127.0.0.0/8, ::1/128, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7"


@dataclass(frozen=True, slots=True)
class EdgeSettings(_FromEnv):
    stores: Stores
    bind: tuple[str, int]
    default_domain: str
    scan_hash_secret: Secret
    templates: Templates = field(default_factory=Templates)
    trusted_country_header: str | None = None
    geoip_db: Path | None = None  # MaxMind-format database: country by IP when no trusted header says
    cache_entries: int = 200_000  # code, group and negative rows kept per edge process
    cache_bytes: int = 64 << 20  # estimated memory of each local cache (codes; groups), negative entries included
    cache_ttl: float = 60.0  # seconds; the backstop behind the invalidation stream
    negative_ttl: float = 2.0  # seconds an unknown slug stays cached as unknown
    journal_dir: Path = Path(".scanroute") / "journal"
    journal_bytes: int = 1024 << 20  # per process; past it scans are shed (503) until the journal is replayed
    journal_min_free: int = 256 << 20  # bytes the journal leaves free on its file system
    scan_stream_entries: int = 1_000_000  # scan-stream entries past which scans are shed (0: no limit)
    redis_memory_share: float = 0.9  # of Redis's maxmemory (if set), past which scans are shed (0: never)
    read_your_writes: bool = True  # off only to measure what it costs (docs/freshness.md)
    # Peers whose X-Forwarded-For is believed (docs/edge.md); none by default: the peer is the client.
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    # Clients `/readyz` and `/metrics` answer (docs/edge.md); loopback and private networks by default.
    ops_from: tuple[IPv4Network | IPv6Network, ...] = tuple(ip_network(n) for n in PRIVATE_NETWORKS.split(", "))
    header_timeout: float = 10.0  # seconds a client has to send a request's complete head
    keepalive_timeout: float = 15.0  # seconds an idle keep-alive connection is kept open
    max_connections: int = 4096  # per process; past it the process stops accepting until one closes
    drain_timeout: float = 10.0  # seconds a stopping process waits for requests in flight
    workers: int = 1  # processes sharing the listening socket when `--workers` is not given

    @property
    def stop_deadline(self) -> float:
        """Seconds after SIGTERM: the drain, then the scan batches in flight and a journal replay."""
        return self.drain_timeout + 2 * EDGE_FLUSH_S

    @classmethod
    def read(cls, r: _Reader) -> EdgeSettings:
        bind = r.bind("EDGE_BIND", "127.0.0.1:8080")
        default_domain, _ = _public(r, bind)
        country = r.text("TRUSTED_COUNTRY_HEADER", "-")
        geoip = r.text("GEOIP_DB", "-")
        if geoip != "-" and not Path(geoip).is_file():
            raise ConfigError("GEOIP_DB", f"no such file {geoip!r}")
        if geoip != "-" and (problem := unreadable(Path(geoip))) is not None:
            raise ConfigError("GEOIP_DB", f"{geoip!r} is no MaxMind-format database: {problem}")
        return cls(
            stores=Stores.read(r),
            bind=bind,
            default_domain=default_domain,
            scan_hash_secret=r.secret("SCAN_HASH_SECRET"),
            templates=Templates.read(r),
            trusted_country_header=None if country == "-" else country.lower(),
            geoip_db=None if geoip == "-" else Path(geoip),
            cache_entries=r.integer("EDGE_CACHE_ENTRIES", 200_000, minimum=1),
            cache_ttl=r.number("EDGE_CACHE_TTL", 60.0, minimum=0.1),
            negative_ttl=r.number("EDGE_NEGATIVE_TTL", 2.0, minimum=0.0),
            journal_dir=Path(r.text("EDGE_JOURNAL_DIR", str(Path(".scanroute") / "journal"))),
            journal_bytes=int(r.number("EDGE_JOURNAL_MB", 1024, minimum=0.001) * (1 << 20)),
            journal_min_free=r.integer("EDGE_JOURNAL_MIN_FREE_MB", 256, minimum=0) << 20,
            scan_stream_entries=r.integer("SCAN_STREAM_MAX_ENTRIES", 1_000_000, minimum=0),
            redis_memory_share=_percent(r, "EDGE_REDIS_MEMORY_PERCENT", 90) / 100,
            read_your_writes=r.flag("EDGE_READ_YOUR_WRITES", True),
            cache_bytes=r.integer("EDGE_CACHE_MB", 64, minimum=1) << 20,
            trusted_proxies=r.networks("TRUSTED_PROXIES"),
            ops_from=r.networks("EDGE_OPS_FROM", PRIVATE_NETWORKS),
            header_timeout=r.number("EDGE_HEADER_TIMEOUT", 10.0, minimum=0.01),
            keepalive_timeout=r.number("EDGE_KEEPALIVE_TIMEOUT", 15.0, minimum=0.01),
            max_connections=r.integer("EDGE_MAX_CONNECTIONS", 4096, minimum=1),
            drain_timeout=r.number("EDGE_DRAIN_TIMEOUT", 10.0, minimum=0.0),
            workers=r.integer("EDGE_WORKERS", 1, minimum=1),
        )


@dataclass(frozen=True, slots=True)
class IngestSettings(_FromEnv):
    stores: Stores
    batch_size: int = 5000
    block_ms: int = 200
    consumer: str = ""
    claim_idle_ms: int = 60_000  # a consumer silent this long is presumed dead; its entries are claimed
    max_attempts: int = 5  # an entry whose storing failed this often (not for an outage) is dead-lettered
    retention_days: int = 0  # 0 keeps scans forever
    metrics_interval_s: float = 30.0
    metrics_bind: tuple[str, int] | None = None  # Prometheus /metrics; off by default

    @property
    def stop_deadline(self) -> float:
        """Seconds after SIGTERM: the batch in hand (WORKER_STOP_S)."""
        return WORKER_STOP_S

    @classmethod
    def read(cls, r: _Reader) -> IngestSettings:
        return cls(
            stores=Stores.read(r),
            batch_size=r.integer("INGEST_BATCH_SIZE", 5000, minimum=1),
            block_ms=r.integer("INGEST_BLOCK_MS", 200, minimum=1),
            consumer=r.text("INGEST_CONSUMER", f"{os.uname().nodename}-{os.getpid()}"),
            claim_idle_ms=r.integer("INGEST_CLAIM_IDLE_MS", 60_000, minimum=100),
            max_attempts=r.integer("INGEST_MAX_ATTEMPTS", 5, minimum=1),
            retention_days=r.integer("SCAN_RETENTION_DAYS", 0, minimum=0),
            metrics_interval_s=r.number("INGEST_METRICS_INTERVAL", 30.0, minimum=0.1),
            metrics_bind=r.optional_bind("INGEST_METRICS_BIND"),
        )


@dataclass(frozen=True, slots=True)
class WebhookSettings(_FromEnv):
    stores: Stores
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    concurrency: int = 128  # deliveries in flight in one dispatcher process, all endpoints together
    endpoint_concurrency: int = 8  # deliveries in flight to one endpoint, across every dispatcher
    org_concurrency: int = 32  # deliveries in flight for one organisation and mode, across every dispatcher
    org_queue: int = 10_000  # pending deliveries of one organisation and mode before its events wait in the outbox
    lease: float = 60.0  # seconds a claimed delivery is held before another dispatcher may send it again
    poll_interval: float = 0.5  # seconds to wait when nothing was due
    delivery_timeout: float = 10.0  # seconds for one whole request (docs/api.md §2.5)
    log_retention_days: int = 30  # finished deliveries and their attempts are kept this long; 0 keeps them forever
    metrics_bind: tuple[str, int] | None = None  # Prometheus /metrics; off by default

    @property
    def stop_deadline(self) -> float:
        """Seconds after SIGTERM: the sends in flight, then recording them (WEBHOOK_RECORD_S)."""
        return self.delivery_timeout + WEBHOOK_RECORD_S

    @classmethod
    def read(cls, r: _Reader) -> WebhookSettings:
        return cls(
            stores=Stores.read(r),
            outbound=OutboundSettings.read(r),
            concurrency=r.integer("WEBHOOK_CONCURRENCY", 128, minimum=1),
            endpoint_concurrency=r.integer("WEBHOOK_ENDPOINT_CONCURRENCY", 8, minimum=1),
            org_concurrency=r.integer("WEBHOOK_ORG_CONCURRENCY", 32, minimum=1),
            org_queue=r.integer("WEBHOOK_ORG_QUEUE", 10_000, minimum=1),
            # Longer than one attempt (DNS and the 10 s request): a live dispatcher never loses its lease.
            lease=r.number("WEBHOOK_LEASE", 60.0, minimum=20.0),
            poll_interval=r.number("WEBHOOK_POLL_INTERVAL", 0.5, minimum=0.01),
            log_retention_days=r.integer("WEBHOOK_LOG_RETENTION_DAYS", 30, minimum=0),
            metrics_bind=r.optional_bind("WEBHOOKS_METRICS_BIND"),
        )


@dataclass(frozen=True, slots=True)
class JobSettings(_FromEnv):
    """The export/import worker (`scanroute jobs`): what it renders needs the control plane's settings."""

    control_plane: ControlPlaneSettings
    poll_interval: float = 0.5  # seconds to wait when no job is queued
    lease: float = 60.0  # seconds without a heartbeat after which another worker takes a running job over

    @property
    def stop_deadline(self) -> float:
        """Seconds after SIGTERM: the job in progress back in the queue (WORKER_STOP_S)."""
        return WORKER_STOP_S

    @classmethod
    def read(cls, r: _Reader) -> JobSettings:
        return cls(
            control_plane=ControlPlaneSettings.read(r),
            poll_interval=r.number("JOBS_POLL_INTERVAL", 0.5, minimum=0.01),
            lease=r.number("JOBS_LEASE", 60.0, minimum=1.0),
        )
