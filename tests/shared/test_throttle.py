from __future__ import annotations

from shared.throttle import KeyedThrottle


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
