"""Password hashes and the edge's bounded, throttled checks."""

from __future__ import annotations

import asyncio

import pytest

from shared.passwords import PasswordChecks, hash_password, verify_password
from shared.throttle import KeyedThrottle

HASH = hash_password("open sesame")


def test_hashes_are_argon2id_salted_and_verify_only_the_right_password() -> None:
    assert HASH.startswith("$argon2id$") and "open sesame" not in HASH
    assert hash_password("open sesame") != HASH
    assert verify_password(HASH, "open sesame")
    assert not verify_password(HASH, "open sesame ")
    assert not verify_password("not a hash", "open sesame")


async def test_right_and_wrong_passwords() -> None:
    checks = PasswordChecks()
    try:
        assert (await checks.check("qr_1", "198.51.100.1", HASH, "open sesame")).result == "right"
        assert (await checks.check("qr_1", "198.51.100.1", HASH, "guess")).result == "wrong"
    finally:
        checks.close()


async def test_wrong_guesses_from_one_address_are_throttled_right_ones_are_not_counted() -> None:
    checks = PasswordChecks(per_client=KeyedThrottle(burst=2, per_second=0.001))
    try:
        for _ in range(5):
            assert (await checks.check("qr_1", "198.51.100.1", HASH, "open sesame")).result == "right"
        assert [(await checks.check("qr_1", "198.51.100.1", HASH, "guess")).result for _ in range(3)] == \
            ["wrong", "wrong", "throttled"]
        throttled = await checks.check("qr_2", "198.51.100.1", HASH, "open sesame")
        assert throttled.result == "throttled" and throttled.retry_after > 0  # the address, whatever the code
        assert (await checks.check("qr_1", "198.51.100.2", HASH, "open sesame")).result == "right"
    finally:
        checks.close()


async def test_attempts_on_one_code_are_throttled_whatever_the_address() -> None:
    checks = PasswordChecks(per_code=KeyedThrottle(burst=2, per_second=0.001))
    try:
        results = [(await checks.check("qr_1", f"198.51.100.{i}", HASH, "guess")).result for i in range(3)]
        assert results == ["wrong", "wrong", "throttled"]
        assert (await checks.check("qr_2", "198.51.100.9", HASH, "open sesame")).result == "right"
    finally:
        checks.close()


async def test_checks_run_off_the_event_loop_and_excess_ones_are_refused_at_once() -> None:
    checks = PasswordChecks(workers=1, max_in_flight=2)
    try:
        running = [asyncio.create_task(checks.check("qr_1", f"203.0.113.{i}", HASH, "guess")) for i in range(2)]
        await asyncio.sleep(0)
        assert (await checks.check("qr_2", "203.0.113.9", HASH, "open sesame")).result == "throttled"
        loop_turns = 0
        while not all(task.done() for task in running):  # bounded: the hashes finish
            await asyncio.sleep(0)
            loop_turns += 1
        assert loop_turns > 10  # the loop kept serving while the hashes ran
        assert [task.result().result for task in running] == ["wrong", "wrong"]
    finally:
        checks.close()


@pytest.mark.parametrize("password", ["", "x" * 10_000])
async def test_absurd_passwords_are_just_wrong(password: str) -> None:
    checks = PasswordChecks()
    try:
        assert (await checks.check("qr_1", "198.51.100.1", HASH, password)).result == "wrong"
    finally:
        checks.close()


async def test_one_ipv6_host_is_one_client_whatever_address_of_its_64_it_uses() -> None:
    """One machine owns a whole /64: a fresh address per guess would otherwise be a fresh budget
    (docs/rules.md, "Passwords")."""
    checks = PasswordChecks(per_client=KeyedThrottle(burst=2, per_second=0.001))
    try:
        results = [(await checks.check("qr_1", f"2001:db8:1:2::{n + 1:x}", HASH, "guess")).result for n in range(3)]
        assert results == ["wrong", "wrong", "throttled"]
        assert (await checks.check("qr_1", "2001:db8:1:3::1", HASH, "open sesame")).result == "right"
    finally:
        checks.close()
