from __future__ import annotations

import pytest

from shared.settings import ConfigError, ControlPlaneSettings, EdgeSettings, IngestSettings, WebhookSettings

BASE = {"DATABASE_URL": "postgresql://app:hunter2@db.internal:5432/scanroute", "REDIS_URL": "redis://cache:6379/0",
        "SCAN_HASH_SECRET": "0123456789abcdef0123"}


def test_secrets_are_hidden_in_repr() -> None:
    settings = EdgeSettings.from_env(BASE)
    text = repr(settings)
    assert "hunter2" not in text and "0123456789abcdef0123" not in text
    assert settings.stores.database_url == BASE["DATABASE_URL"]


def test_defaults_follow_the_contract() -> None:
    settings = ControlPlaneSettings.from_env(BASE)
    assert settings.bind == ("127.0.0.1", 8000) and settings.default_domain == "127.0.0.1:8080"
    assert settings.public_scheme == "https"


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
    ({"REDIS_URL": ""}, "REDIS_URL"),
    ({"EDGE_BIND": "8080"}, "EDGE_BIND"),
    ({"PUBLIC_SCHEME": "ftp"}, "PUBLIC_SCHEME"),
    ({"PAGE_URL_TEMPLATE": "https://pages.example.com/p/"}, "PAGE_URL_TEMPLATE"),
    ({"SCAN_HASH_SECRET": "short"}, "SCAN_HASH_SECRET"),
    # float() reads these; inf then overflowed in math.ceil and nan passed every minimum.
    ({"EDGE_KEEPALIVE_TIMEOUT": "inf"}, "EDGE_KEEPALIVE_TIMEOUT"),
    ({"EDGE_CACHE_TTL": "nan"}, "EDGE_CACHE_TTL"),
    ({"EDGE_DRAIN_TIMEOUT": "-Infinity"}, "EDGE_DRAIN_TIMEOUT"),
    ({"REDIS_URL": "unix://"}, "REDIS_URL"),
    # A port typo was a driver's traceback; a port past 65535 was taken modulo 65536 (70000: 4464).
    ({"DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:5432x/scanroute"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:70000/scanroute"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://app:hunter2@127.0.0.1:0/scanroute"}, "DATABASE_URL"),
    ({"REDIS_URL": "redis://127.0.0.1:6379x/0"}, "REDIS_URL"),
])
def test_a_missing_or_malformed_variable_is_named(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        EdgeSettings.from_env({**BASE, **overrides})
    assert raised.value.variable == variable and variable in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_worker_metrics_are_off_unless_a_bind_is_given() -> None:
    assert IngestSettings.from_env(BASE).metrics_bind is None
    assert WebhookSettings.from_env(BASE).metrics_bind is None
    assert IngestSettings.from_env({**BASE, "INGEST_METRICS_BIND": "127.0.0.1:9465"}).metrics_bind == (
        "127.0.0.1", 9465)
    with pytest.raises(ConfigError) as raised:
        WebhookSettings.from_env({**BASE, "WEBHOOKS_METRICS_BIND": "9466"})
    assert raised.value.variable == "WEBHOOKS_METRICS_BIND"


def test_a_unix_socket_redis_url_is_accepted() -> None:
    """`unix` is among REDIS_URL's schemes, and a socket's URL has a path where others have a host."""
    settings = EdgeSettings.from_env({**BASE, "REDIS_URL": "unix:///run/redis/redis.sock?db=1"})
    assert settings.stores.redis_url == "unix:///run/redis/redis.sock?db=1"


@pytest.mark.parametrize(("edge_bind", "domain"), [
    ("[::1]:8080", "[::1]:8080"), ("[2001:db8::5]:80", "[2001:db8::5]:80"), ("0.0.0.0:9000", "0.0.0.0:9000")])
def test_the_default_domain_brackets_an_ipv6_bind_address(edge_bind: str, domain: str) -> None:
    """A short URL's host is the edge's bind address by default: an IPv6 literal needs its brackets, else
    `https://::1:8080/slug` is no URL at all."""
    for settings in (ControlPlaneSettings.from_env({**BASE, "EDGE_BIND": edge_bind}),
                     EdgeSettings.from_env({**BASE, "EDGE_BIND": edge_bind})):
        assert settings.default_domain == domain


@pytest.mark.parametrize("domain", [
    "https://qr.example.com",  # the URL pasted: short URLs became https://https://qr.example.com/slug
    "qr.example.com/",  # no Host header equals it: the edge answered every scan of every printed code 404
    "qr.example.com/go",
    "qr example.com",
    "qr.example.com:70000",
])
def test_a_default_domain_that_is_no_host_is_named(domain: str) -> None:
    for settings in (ControlPlaneSettings, EdgeSettings):
        with pytest.raises(ConfigError) as raised:
            settings.from_env({**BASE, "DEFAULT_DOMAIN": domain})
        assert raised.value.variable == "DEFAULT_DOMAIN" and domain in str(raised.value)


@pytest.mark.parametrize(("domain", "read"), [
    ("qr.example.com", "qr.example.com"), ("QR.Example.com:8443", "qr.example.com:8443"),
    ("localhost:8080", "localhost:8080"), ("127.0.0.1:8080", "127.0.0.1:8080"), ("[::1]:8080", "[::1]:8080"),
    ("bücher.example:8443", "xn--bcher-kva.example:8443"), ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    # refused by IDNA 2008 but taken by earlier releases (i❤.ws): a running installation's default domain
    ("XN--I-7IQ.ws", "xn--i-7iq.ws"), ("i❤.ws", "xn--i-7iq.ws")])
def test_a_default_domain_is_a_host_and_a_port_perhaps(domain: str, read: str) -> None:
    assert EdgeSettings.from_env({**BASE, "DEFAULT_DOMAIN": domain}).default_domain == read


@pytest.mark.parametrize(("value", "believed"), [
    (None, ["127.0.0.1/32", "::1/128"]),  # a proxy on the same host, as uvicorn's own default
    ("10.0.0.5, 10.1.2.3/16, fd00::/8", ["10.0.0.5/32", "10.1.0.0/16", "fd00::/8"]),  # host bits cleared
    ("-", []),  # none: every peer is the client
])
def test_the_control_planes_trusted_proxies_become_uvicorns_forwarded_allow_ips(
        value: str | None, believed: list[str]) -> None:
    env = BASE if value is None else {**BASE, "CONTROL_PLANE_TRUSTED_PROXIES": value}
    assert ControlPlaneSettings.from_env(env).forwarded_allow_ips == believed


def test_a_malformed_trusted_proxy_of_the_control_plane_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        ControlPlaneSettings.from_env({**BASE, "CONTROL_PLANE_TRUSTED_PROXIES": "10.0.0.0/33"})
    assert "CONTROL_PLANE_TRUSTED_PROXIES" in str(raised.value)
