"""A user changes their own password (docs/dashboard.md, "Your account")."""

from __future__ import annotations

import asyncio

from tests.control_plane.dashboard.conftest import (
    PASSWORD,
    BrowserFactory,
    UserFactory,
    csrf_of,
    post_form,
    sign_in,
)


def _change(current: str, new: str, confirm: str | None = None) -> dict[str, str]:
    return {"current_password": current, "new_password": new, "confirm_password": new if confirm is None else confirm}


async def test_an_invited_viewer_replaces_the_temporary_password(browser: BrowserFactory, make_user: UserFactory):
    await make_user("vi@example.com", "viewer", password="temporary-pass")
    here, elsewhere = browser(), browser()
    await sign_in(here, "vi@example.com", "temporary-pass")
    await sign_in(elsewhere, "vi@example.com", "temporary-pass")
    assert 'href="/app/account"' in (await here.get("/app/")).text
    changed = await post_form(here, "/app/account", "/app/account", _change("temporary-pass", "only mine now"))
    assert changed.status_code == 200 and "Your password is changed" in changed.text
    assert (await here.get("/app/codes")).status_code == 200  # this browser stays signed in
    assert (await elsewhere.get("/app/codes")).status_code == 303  # the owner's copy of the old one does not
    assert (await sign_in(browser(), "vi@example.com", "temporary-pass")).status_code == 401
    assert (await sign_in(browser(), "vi@example.com", "only mine now")).status_code == 303


async def test_a_wrong_current_password_or_a_mismatch_changes_nothing(browser: BrowserFactory,
                                                                     make_user: UserFactory):
    await make_user()
    client = browser()
    await sign_in(client)
    wrong = await post_form(client, "/app/account", "/app/account", _change("not the password", "new password 1"))
    assert wrong.status_code == 403
    assert 'id="current_password-error">Current password is not your password' in wrong.text
    typo = await post_form(client, "/app/account", "/app/account", _change(PASSWORD, "new password 1", "new pasword 1"))
    assert typo.status_code == 422 and "does not match the new password" in typo.text
    short = await post_form(client, "/app/account", "/app/account", _change(PASSWORD, "short"))
    assert short.status_code == 422 and "New password must be at least 10 characters" in short.text
    assert (await client.get("/app/codes")).status_code == 200
    assert (await sign_in(browser(), "ana@example.com", PASSWORD)).status_code == 303


async def test_guessing_the_current_password_is_throttled_like_sign_in(browser: BrowserFactory,
                                                                     make_user: UserFactory):
    """Someone at a browser left signed in cannot try passwords without limit, nor lock the owner out of the
    change with the right one meanwhile: the same count as sign-in's, per e-mail and client address."""
    await make_user()
    client = browser()
    await sign_in(client)
    for attempt in range(5):
        assert (await post_form(client, "/app/account", "/app/account",
                                _change(f"guess {attempt}", "taken over 1"))).status_code == 403
    blocked = await post_form(client, "/app/account", "/app/account", _change(PASSWORD, "taken over 1"))
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert (await sign_in(browser())).status_code == 429  # the guesses count against signing in too
    assert (await sign_in(browser(address="198.51.100.7"))).status_code == 303  # but only at that address


async def test_current_passwords_guessed_at_once_are_checked_at_most_five_times(browser: BrowserFactory,
                                                                                 make_user: UserFactory):
    await make_user()
    client = browser()
    await sign_in(client)
    token = csrf_of((await client.get("/app/account")).text)
    answers = await asyncio.gather(*(client.post("/app/account", data={**_change(f"guess {n}", "taken over 1"),
                                                                       "csrf_token": token}) for n in range(12)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [403] * 5 + [429] * 7, codes


async def test_the_change_form_needs_the_sessions_csrf_token(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    client = browser()
    await sign_in(client)
    forged = await client.post("/app/account", data=_change(PASSWORD, "taken over 1"))
    assert forged.status_code == 403
    assert (await sign_in(browser(), "ana@example.com", PASSWORD)).status_code == 303
