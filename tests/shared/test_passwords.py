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


@pytest.mark.parametrize(("bucket", "guesses", "then"), [
    # one code: its budget, whatever the address; another code answers
    ("per_code", [("qr_1", f"198.51.100.{i}") for i in range(3)], ("qr_2", "198.51.100.9")),
    # one IPv6 host owns a whole /64: a fresh address per guess would otherwise be a fresh budget (docs/rules.md,
    # "Passwords"); another /64 answers
    ("per_client", [("qr_1", f"2001:db8:1:2::{n + 1:x}") for n in range(3)], ("qr_1", "2001:db8:1:3::1")),
])
async def test_guesses_share_a_budget_per_code_and_per_client(bucket: str, guesses: list[tuple[str, str]],
                                                               then: tuple[str, str]) -> None:
    checks = PasswordChecks(**{bucket: KeyedThrottle(burst=2, per_second=0.001)})
    try:
        results = [(await checks.check(code, address, HASH, "guess")).result for code, address in guesses]
        assert results == ["wrong", "wrong", "throttled"]
        assert (await checks.check(*then, HASH, "open sesame")).result == "right"
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
