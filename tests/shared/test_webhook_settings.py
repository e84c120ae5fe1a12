from __future__ import annotations

import pytest

from shared.settings import ConfigError, ControlPlaneSettings, WebhookSettings

BASE = {"DATABASE_URL": "postgresql://app:hunter2@db.internal:5432/scanroute", "REDIS_URL": "redis://cache:6379/0"}


def test_outbound_defaults_are_strict() -> None:
    for settings in (WebhookSettings.from_env(BASE), ControlPlaneSettings.from_env(BASE)):
        assert settings.outbound.allowed_hosts == frozenset() and settings.outbound.allow_http is False


def test_development_allow_list() -> None:
    settings = WebhookSettings.from_env({**BASE, "OUTBOUND_ALLOWED_HOSTS": " 127.0.0.1, LocalHost ,",
                                         "WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_CONCURRENCY": "8"})
    assert settings.outbound.allowed_hosts == {"127.0.0.1", "localhost"} and settings.outbound.allow_http
    assert settings.concurrency == 8 and settings.endpoint_concurrency == 8 and settings.delivery_timeout == 10
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"WEBHOOK_ALLOW_HTTP": "maybe"}, "WEBHOOK_ALLOW_HTTP"),
    ({"WEBHOOK_CONCURRENCY": "0"}, "WEBHOOK_CONCURRENCY"),
    ({"WEBHOOK_ORG_QUEUE": "many"}, "WEBHOOK_ORG_QUEUE"),
    ({"WEBHOOK_LEASE": "5"}, "WEBHOOK_LEASE"),
])
def test_bad_values_name_the_variable(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSettings.from_env({**BASE, **overrides})
    assert caught.value.variable == variable
