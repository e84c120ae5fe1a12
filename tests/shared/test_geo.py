from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from shared.geo import CountryLookup
from shared.settings import ConfigError, EdgeSettings


def build_country_db(path: Path) -> Path:
    """A tiny GeoLite2-Country-shaped database: two documentation ranges and one registered-only range."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "AU", "names": {"en": "Australia"}}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"country": {"iso_code": "de"}})
    writer.insert_network(IPSet(["192.0.2.0/24"]), {"registered_country": {"iso_code": "JP"}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "NZ"}})
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def country_db(tmp_path: Path) -> Path:
    return build_country_db(tmp_path / "country.mmdb")


def test_countries_are_found_by_ip(country_db: Path) -> None:
    lookup = CountryLookup(country_db)
    try:
        assert lookup.country("203.0.113.7") == "AU"
        assert lookup.country("198.51.100.1") == "DE"
        assert lookup.country("192.0.2.5") == "JP"
        assert lookup.country("2001:db8::1") == "NZ"
        assert lookup.country("10.0.0.1") is None
        assert lookup.country("not an ip") is None
    finally:
        lookup.close()


def test_a_missing_database_file_stops_the_edge_at_start(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://h/db", "REDIS_URL": "redis://h", "SCAN_HASH_SECRET": "x" * 20,
           "GEOIP_DB": str(tmp_path / "missing.mmdb")}
    with pytest.raises(ConfigError, match="GEOIP_DB"):
        EdgeSettings.from_env(env)


@pytest.mark.parametrize("content", [b"<html>404 Not Found</html>\n", b""])
def test_a_file_that_is_no_maxmind_database_stops_the_edge_at_start(tmp_path: Path, content: bytes) -> None:
    """What a failed download leaves behind: before, the edge died in its start-up with a traceback (and under
    `scanroute up` restarted forever)."""
    not_a_database = tmp_path / "GeoLite2-Country.mmdb"
    not_a_database.write_bytes(content)
    env = {"DATABASE_URL": "postgresql://h/db", "REDIS_URL": "redis://h", "SCAN_HASH_SECRET": "x" * 20,
           "GEOIP_DB": str(not_a_database)}
    with pytest.raises(ConfigError, match="GEOIP_DB"):
        EdgeSettings.from_env(env)


def test_a_maxmind_database_is_accepted(country_db: Path) -> None:
    env = {"DATABASE_URL": "postgresql://h/db", "REDIS_URL": "redis://h", "SCAN_HASH_SECRET": "x" * 20,
           "GEOIP_DB": str(country_db)}
    assert EdgeSettings.from_env(env).geoip_db == country_db
