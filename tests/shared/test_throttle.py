from __future__ import annotations

import pytest

from shared.throttle import KeyedThrottle, client_key


def test_a_key_gets_its_burst_then_one_attempt_per_refill_interval() -> None:
    throttle = KeyedThrottle(burst=3, per_second=0.5)
    assert [throttle.spend("a", now=100.0) for _ in range(4)] == [True, True, True, False]
    assert throttle.retry_after("a", now=100.0) == 2.0
    assert throttle.spend("b", now=100.0)  # other keys are untouched
    assert not throttle.spend("a", now=101.9) and throttle.spend("a", now=102.0)
    assert not throttle.allows("a", now=102.0)


def test_a_refund_gives_an_attempt_back() -> None:
    throttle = KeyedThrottle(burst=1, per_second=0.01)
    assert throttle.spend("a", now=0.0)
    throttle.refund("a", now=0.0)
    assert throttle.spend("a", now=0.0)


def test_memory_is_bounded_by_forgetting_the_least_recently_used_keys() -> None:
    throttle = KeyedThrottle(burst=1, per_second=0.001, max_keys=2)
    assert throttle.spend("a", now=0.0) and throttle.spend("b", now=0.0) and throttle.spend("c", now=0.0)
    assert len(throttle._buckets) == 2
    assert throttle.spend("a", now=0.0)  # forgotten: starts full again
    assert not throttle.spend("c", now=0.0)


@pytest.mark.parametrize(("address", "key"), [
    ("198.51.100.7", "198.51.100.7"),
    ("::ffff:198.51.100.7", "198.51.100.7"),  # a dual-stack socket's name for an IPv4 peer
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("unknown", "unknown"),
])
def test_a_client_is_counted_by_its_ipv4_address_or_its_ipv6_64(address: str, key: str) -> None:
    assert client_key(address) == key
