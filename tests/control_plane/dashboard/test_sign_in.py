from __future__ import annotations

import asyncio
import http.cookiejar
import time
from http.cookies import SimpleCookie
from typing import Any

import argon2
import asyncpg
import pytest
import redis.asyncio as aioredis

from control_plane.services.users import reset_password
from tests.control_plane.dashboard.conftest import PASSWORD, BrowserFactory, UserFactory, csrf_of, post_form, sign_in

BOUND = 30.0  # seconds; a bound on a wait, not a measurement
ATTACKER = "203.0.113.66"
HOUR = 3600


class BrowserClock:
    """The clock a client's cookie jar reads (`http.cookiejar` calls `time.time()`), moved on by `offset` seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> Any:  # gmtime, strftime, … as the real module
        return getattr(time, name)


def _cookie_attributes(set_cookie: str) -> str:
    return set_cookie.lower()


async def test_sign_in_opens_the_overview_with_a_session_cookie(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    response = await sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/app/"
    set_cookie = _cookie_attributes(response.headers["set-cookie"])
    assert "scanroute_session=" in set_cookie and "httponly" in set_cookie and "samesite=lax" in set_cookie
    assert "secure" not in set_cookie  # plain http: a Secure cookie would never come back
    page = await client.get("/app/")
    assert page.status_code == 200 and "acme" in page.text and "Usage this month" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_an_active_user_stays_signed_in_past_8_hours_after_sign_in(browser: BrowserFactory,
                                                                         make_user: UserFactory,
                                                                         redis: aioredis.Redis, redis_namespace: str,
                                                                         monkeypatch: pytest.MonkeyPatch):
    clock = BrowserClock()
    monkeypatch.setattr(http.cookiejar, "time", clock)
    await make_user()
    client = browser()
    await sign_in(client)
    for hours in (3, 6, 7.5, 8.5, 12):  # a working day with a page view every few hours
        clock.offset = hours * HOUR
        page = await client.get("/app/")
        assert page.status_code == 200, f"signed out {hours} hours after sign-in, though active"
    # What ends an idle session is the server's expiry, renewed by that last page view.
    [session] = await redis.keys(f"{redis_namespace}:dash:session:*")
    assert 7.9 * HOUR < await redis.ttl(session) <= 8 * HOUR


async def test_the_session_cookie_is_secure_under_https(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    response = await sign_in(browser("https://cp.test"))
    assert "secure" in _cookie_attributes(response.headers["set-cookie"])


async def test_pages_need_a_session(browser: BrowserFactory):
    response = await browser().get("/app/")
    assert response.status_code == 303 and response.headers["location"] == "/app/login?next=/app/"


async def test_wrong_password_and_unknown_email_are_refused_alike(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    wrong = await sign_in(client, password="not the password")
    unknown = await sign_in(client, email="nobody@example.com")
    for response in (wrong, unknown):
        assert response.status_code == 401 and "e-mail address or password is wrong" in response.text
        assert "scanroute_session" not in SimpleCookie(response.headers.get("set-cookie", ""))
    assert (await client.get("/app/")).status_code == 303


async def test_sign_in_without_the_form_token_is_refused(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    response = await client.post("/app/login", data={"email": "ana@example.com", "password": "correct horse battery"})
    assert response.status_code == 403
    assert (await client.get("/app/")).status_code == 303


async def test_repeated_failures_throttle_even_the_right_password(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    for _ in range(5):
        assert (await sign_in(client, password="guess guess guess")).status_code == 401
    blocked = await sign_in(client)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in blocked.text
    assert (await client.get("/app/")).status_code == 303


async def test_guesses_sent_at_once_are_checked_at_most_five_times(browser: BrowserFactory, make_user: UserFactory):
    """Each attempt takes its place in the count before argon2 runs: guesses in flight together cannot all pass a
    check of the count made before any of them failed."""
    await make_user()
    clients = [browser() for _ in range(20)]
    tokens = [csrf_of((await c.get("/app/login")).text) for c in clients]
    answers = await asyncio.gather(*(c.post("/app/login", data={"email": "ana@example.com", "password": f"guess {n}",
                                                                "csrf_token": t})
                                     for n, (c, t) in enumerate(zip(clients, tokens, strict=True))))
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 5 + [429] * 15, codes


async def test_the_right_password_after_a_burst_of_guesses_is_refused(browser: BrowserFactory, make_user: UserFactory):
    """Guesses sent at the same time each take a place before their password is checked: no more than the
    limit are checked, and the right password sent after them is refused."""
    await make_user()
    clients = [browser() for _ in range(11)]
    tokens = [csrf_of((await c.get("/app/login")).text) for c in clients]

    async def guess(n: int) -> int:
        answer = await clients[n].post("/app/login", data={"email": "ana@example.com", "password": f"guess {n}",
                                                            "csrf_token": tokens[n]})
        return answer.status_code

    codes = await asyncio.gather(*(guess(n) for n in range(11)))
    assert sorted(codes) == [401] * 5 + [429] * 6, codes
    assert (await sign_in(browser())).status_code == 429  # from the address that guessed


async def test_five_wrong_guesses_from_one_address_do_not_lock_the_owner_out(browser: BrowserFactory,
                                                                              make_user: UserFactory):
    """Anyone who knows Ana's e-mail address can guess from their own address: that address is stopped after 5,
    and Ana, signing in from hers with the right password, is not."""
    await make_user()
    for _ in range(5):
        assert (await sign_in(browser(address=ATTACKER), password="guess guess guess")).status_code == 401
    assert (await sign_in(browser(address=ATTACKER))).status_code == 429  # even with the right password
    owner = browser(address="198.51.100.7")
    assert (await sign_in(owner)).status_code == 303
    assert (await owner.get("/app/")).status_code == 200
    # Ana's sign-in starts her own count over, not the guesser's.
    assert (await sign_in(browser(address=ATTACKER), password="guess guess guess")).status_code == 429


async def test_guesses_spread_over_many_addresses_stop_at_the_accounts_total(browser: BrowserFactory,
                                                                            make_user: UserFactory,
                                                                            db: asyncpg.Connection[Any]):
    """Each address may guess 5 times, but no more than 100 passwords of one account are checked per window,
    however many addresses guess and however they spell it: sent at once from 25 addresses, 125 guesses get
    100 checks, and the right password then waits, from any address."""
    vic = await make_user("vic@example.com")
    # A cheap hash keeps 100 checks quick; what is counted does not depend on it.
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", vic.id,
                     argon2.PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD))
    spellings = ("vic@example.com", "VIC@example.com", "v\u0130c@example.com")
    guessers = [(browser(address=f"192.0.2.{n // 5 + 1}"), spellings[n % 3], f"guess {n}") for n in range(125)]
    tokens = [csrf_of((await client.get("/app/login")).text) for client, _, _ in guessers]
    answers = await asyncio.gather(*(client.post("/app/login", data={"email": email, "password": password,
                                                                     "csrf_token": token})
                                     for (client, email, password), token in zip(guessers, tokens, strict=True)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [401] * 100 + [429] * 25, codes
    blocked = await sign_in(browser(address="198.51.100.7"), "vic@example.com")
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


async def test_sign_ins_that_succeed_do_not_use_up_the_clients_limit(browser: BrowserFactory, make_user: UserFactory):
    """An office behind one address signs in all day: only failures count against it."""
    await make_user()
    for _ in range(25):
        assert (await sign_in(browser())).status_code == 303


async def test_the_limit_holds_for_every_spelling_that_reaches_the_account(browser: BrowserFactory,
                                                                         make_user: UserFactory):
    await make_user("vic@example.com")
    for _ in range(5):  # from one address; spread over many, see test_guesses_spread_over_many_addresses_…
        assert (await sign_in(browser(), "vic@example.com", "guess guess guess")).status_code == 401
    # PostgreSQL's lower() finds vic@example.com for `vİc` (U+0130); Python's lower() makes it `vi̇c`.
    for email in ("vic@example.com", "VIC@example.com", "v\u0130c@example.com"):
        blocked = await sign_in(browser(), email)
        assert blocked.status_code == 429, f"{email!r} signed in to the locked account: {blocked.status_code}"


async def test_an_unknown_address_is_throttled_like_a_known_one(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    for email in ["v\u0130c@example.com"] * 3 + ["vic@example.com"] * 2:  # one address to the lookup; no account
        assert (await sign_in(browser(), email)).status_code == 401
    assert (await sign_in(browser(), "vic@example.com")).status_code == 429


async def test_sign_in_goes_back_to_the_page_asked_for_but_never_off_site(browser: BrowserFactory,
                                                                          make_user: UserFactory):
    await make_user()
    assert (await sign_in(browser(), next_path="/app/users")).headers["location"] == "/app/users"
    assert (await sign_in(browser(), next_path="//evil.example/")).headers["location"] == "/app/"


async def test_sign_out_ends_the_session_on_the_server(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    await sign_in(client)
    token = client.cookies["scanroute_session"]
    response = await post_form(client, "/app/", "/app/logout", {})
    assert response.status_code == 303 and response.headers["location"] == "/app/login"
    replay = browser()
    replay.cookies.set("scanroute_session", token)
    assert (await replay.get("/app/")).status_code == 303


async def test_a_post_without_the_csrf_token_is_refused(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    await sign_in(client)
    refused = await client.post("/app/mode", data={"mode": "test"})
    forged = await client.post("/app/mode", data={"mode": "test", "csrf_token": "forged"})
    for response in (refused, forged):
        assert response.status_code == 403 and "did not come from the dashboard" in response.text
    assert "Test mode" not in (await client.get("/app/")).text


async def test_mode_switch_changes_only_this_session(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    one, other = browser(), browser()
    await sign_in(one)
    await sign_in(other)
    switched = await post_form(one, "/app/", "/app/mode", {"mode": "test", "back": "/app/"})
    assert switched.status_code == 303
    assert "Test mode:" in (await one.get("/app/")).text
    assert "Test mode:" not in (await other.get("/app/")).text
    page = await one.get("/app/")
    assert 'value="live"' in page.text and csrf_of(page.text)


async def _waiting_for_a_lock(db: asyncpg.Connection[Any]) -> bool:
    for _ in range(int(BOUND * 10)):
        if await db.fetchval("SELECT count(*) FROM pg_stat_activity"
                             " WHERE wait_event_type = 'Lock' AND datname = current_database()"):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_sign_in_that_rehashes_the_password_does_not_undo_a_reset(browser: BrowserFactory,
                                                                          make_user: UserFactory,
                                                                          db: asyncpg.Connection[Any]):
    ana = await make_user()
    # A hash made with older argon2 parameters, as every stored hash is after an upgrade: sign-in rehashes it.
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", ana.id,
                     argon2.PasswordHasher(time_cost=1, memory_cost=8192).hash(PASSWORD))
    async with db.transaction():  # the owner's reset, committed while an old-password sign-in is under way
        await reset_password(db, ana.org_id, ana.id, "new password 1")
        racing = asyncio.create_task(sign_in(browser()))
        assert await _waiting_for_a_lock(db), "the sign-in never wrote the rehashed password"
    await asyncio.wait_for(racing, BOUND)
    assert (await sign_in(browser())).status_code == 401, "the old password works again"
    assert (await sign_in(browser(), password="new password 1")).status_code == 303
