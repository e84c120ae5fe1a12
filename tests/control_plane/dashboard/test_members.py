from __future__ import annotations

import redis.asyncio as aioredis

from tests.control_plane.dashboard.conftest import BrowserFactory, UserFactory, post_form, sign_in


async def test_a_viewer_sees_no_user_management_and_cannot_post_to_it(browser: BrowserFactory,
                                                                      make_user: UserFactory):
    await make_user("owner@example.com", "owner")
    await make_user("viewer@example.com", "viewer")
    client = browser()
    await sign_in(client, "viewer@example.com")
    overview = await client.get("/app/")
    assert 'href="/app/users"' not in overview.text
    assert (await client.get("/app/users")).status_code == 403
    # A write forged with the viewer's own valid CSRF token is still refused by the server.
    refused = await post_form(client, "/app/", "/app/users",
                              {"email": "mallory@example.com", "role": "owner", "password": "0123456789ab"})
    assert refused.status_code == 403
    assert (await sign_in(browser(), "mallory@example.com", "0123456789ab")).status_code == 401


async def test_an_owner_invites_a_user_who_can_then_sign_in(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    owner = browser()
    await sign_in(owner)
    page = await post_form(owner, "/app/users", "/app/users",
                           {"email": "ben@example.com", "role": "editor", "password": "temporary-pass"})
    assert page.status_code == 200 and "ben@example.com can now sign in" in page.text
    ben = browser()
    assert (await sign_in(ben, "ben@example.com", "temporary-pass")).status_code == 303
    assert "ben@example.com (editor)" in (await ben.get("/app/")).text


async def test_invitation_errors_are_shown_next_to_the_field(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    await make_user("taken@example.com", "viewer", org="another org")
    owner = browser()
    await sign_in(owner)
    short = await post_form(owner, "/app/users", "/app/users",
                            {"email": "ben@example.com", "role": "editor", "password": "short"})
    assert short.status_code == 422
    assert 'id="invite-password-error">Temporary password must be at least 10 characters' in short.text
    taken = await post_form(owner, "/app/users", "/app/users",
                            {"email": "TAKEN@example.com", "role": "editor", "password": "long enough pass"})
    assert taken.status_code == 409 and 'id="invite-email-error">E-mail already has an account' in taken.text


async def test_the_last_owner_cannot_be_demoted_or_removed(browser: BrowserFactory, make_user: UserFactory):
    owner_user = await make_user()
    owner = browser()
    await sign_in(owner)
    demoted = await post_form(owner, "/app/users", f"/app/users/{owner_user.id}", {"action": "role", "role": "viewer"})
    removed = await post_form(owner, "/app/users", f"/app/users/{owner_user.id}", {"action": "remove"})
    for response in (demoted, removed):
        assert response.status_code == 409 and "at least one owner" in response.text
    assert "ana@example.com (owner)" in (await owner.get("/app/")).text


async def test_role_change_reset_and_removal_apply_to_open_sessions(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    ben_user = await make_user("ben@example.com", "owner")
    owner, ben = browser(), browser()
    await sign_in(owner)
    await sign_in(ben, "ben@example.com")
    await post_form(owner, "/app/users", f"/app/users/{ben_user.id}", {"action": "role", "role": "viewer"})
    assert (await ben.get("/app/users")).headers["location"] == "/app/login?next=/app/users"
    await sign_in(ben, "ben@example.com")
    assert (await ben.get("/app/users")).status_code == 403
    await post_form(owner, "/app/users", f"/app/users/{ben_user.id}",
                    {"action": "password", "password": "new password 1"})
    assert (await sign_in(browser(), "ben@example.com", "new password 1")).status_code == 303
    await post_form(owner, "/app/users", f"/app/users/{ben_user.id}", {"action": "remove"})
    assert (await ben.get("/app/")).status_code == 303
    assert (await sign_in(browser(), "ben@example.com", "new password 1")).status_code == 401


async def test_a_password_reset_ends_the_users_open_sessions(browser: BrowserFactory, make_user: UserFactory,
                                                           redis: aioredis.Redis, redis_namespace: str):
    await make_user()
    ben_user = await make_user("ben@example.com", "editor")
    owner, ben_phone, ben_laptop = browser(), browser(), browser()
    await sign_in(owner)
    await sign_in(ben_phone, "ben@example.com")
    await sign_in(ben_laptop, "ben@example.com")
    assert (await ben_phone.get("/app/codes")).status_code == 200
    assert len(await redis.keys(f"{redis_namespace}:dash:session:*")) == 3
    await post_form(owner, "/app/users", f"/app/users/{ben_user.id}",
                    {"action": "password", "password": "new password 1"})
    for device in (ben_phone, ben_laptop):  # whoever holds one of the old cookies is signed out
        gone = await device.get("/app/codes")
        assert gone.status_code == 303 and gone.headers["location"] == "/app/login?next=/app/codes"
        assert (await device.post("/app/codes/bulk", data={"action": "pause"})).status_code == 303
    assert len(await redis.keys(f"{redis_namespace}:dash:session:*")) == 1  # the owner's; the old ones deleted
    assert (await sign_in(ben_phone, "ben@example.com")).status_code == 401  # the old password no longer works
    assert (await sign_in(ben_phone, "ben@example.com", "new password 1")).status_code == 303
    assert (await ben_phone.get("/app/codes")).status_code == 200
    assert (await owner.get("/app/users")).status_code == 200  # the owner's own session is untouched


async def test_an_owner_resetting_their_own_password_stays_signed_in_here_only(browser: BrowserFactory,
                                                                              make_user: UserFactory):
    ana = await make_user()
    here, elsewhere = browser(), browser()
    await sign_in(here)
    await sign_in(elsewhere)
    reset = await post_form(here, "/app/users", f"/app/users/{ana.id}",
                            {"action": "password", "password": "new password 1"})
    assert reset.status_code == 303
    assert (await here.get("/app/users")).status_code == 200
    assert (await elsewhere.get("/app/users")).status_code == 303


async def test_users_of_another_organisation_are_out_of_reach(browser: BrowserFactory, make_user: UserFactory):
    await make_user()
    stranger = await make_user("eve@example.com", "owner", org="other")
    owner = browser()
    await sign_in(owner)
    assert "eve@example.com" not in (await owner.get("/app/users")).text
    response = await post_form(owner, "/app/users", f"/app/users/{stranger.id}", {"action": "remove"})
    assert response.status_code == 404
    assert (await sign_in(browser(), "eve@example.com")).status_code == 303
