"""compose.yaml as Docker Compose would run it (no Docker engine runs here): each service's variables are the
Dockerfile's ENV plus the file's `environment`, with `${VAR:-default}` at its default."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from control_plane.cli.supervisor import PROCESS_KINDS, stop_timeouts
from shared.settings import ControlPlaneSettings, JobSettings
from tests.conftest import ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line.removeprefix("ENV ").split())
    return env


def interpolate(value: str) -> str:
    """`${VAR:-default}` as Compose reads it with VAR unset; `${VAR:?message}` (required) as a value a user gives."""
    return re.sub(r"\$\{\w+(?::-([^}]*)|:\?[^}]*)\}",
                  lambda m: m.group(1) if m.group(1) is not None else "a-secret-of-32-characters-or-more", value)


def service_env(name: str) -> dict[str, str]:
    return {**dockerfile_env(), **{k: interpolate(str(v)) for k, v in SERVICES[name]["environment"].items()}}


def seconds(duration: str) -> float:
    """A Compose duration such as `30s`, `1m30s` or `1500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"([0-9.]+)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_image_and_file_urls_point_where_a_browser_reaches_the_control_plane() -> None:
    published = {int(port.split(":")[0]) for port in SERVICES["control-plane"]["ports"]}
    for url in (ControlPlaneSettings.from_env(service_env("control-plane")).public_url,
                JobSettings.from_env(service_env("jobs")).control_plane.public_url):  # export file URLs
        parts = urlsplit(url)
        assert parts.hostname == "localhost" and parts.port in published, url


def test_compose_waits_as_long_as_scanroute_up_before_it_kills_a_stopping_process() -> None:
    """Compose kills 10 s after SIGTERM by default: a dispatcher still recording the deliveries it sent was
    cut off, and they were sent again. Each service waits for its process's own drain deadline plus a margin."""
    by_kind = {service["command"][0]: name for name, service in SERVICES.items() if "build" in service}
    for kind in PROCESS_KINDS:
        env = service_env(by_kind[kind])
        grace = seconds(str(SERVICES[by_kind[kind]].get("stop_grace_period", "10s")))
        assert grace >= stop_timeouts(env)[kind], (kind, grace, stop_timeouts(env)[kind])


def test_the_proxies_the_control_plane_trusts_can_be_named_in_compose() -> None:
    """Compose hands a container only the variables its file lists: a proxy in another container must be
    nameable, or every client is that proxy (docs/operations.md, CONTROL_PLANE_TRUSTED_PROXIES)."""
    given = str(SERVICES["control-plane"]["environment"]["CONTROL_PLANE_TRUSTED_PROXIES"])
    assert given.startswith("${CONTROL_PLANE_TRUSTED_PROXIES:-"), given
    settings = ControlPlaneSettings.from_env(service_env("control-plane"))
    assert settings.forwarded_allow_ips == ["127.0.0.1/32", "::1/128"]
