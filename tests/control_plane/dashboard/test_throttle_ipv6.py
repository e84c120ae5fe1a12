"""The sign-in throttle counts a client by its network, not by its full address (docs/dashboard.md, "Sign-in and
sessions"): an IPv6 client by its /64, an IPv4-mapped IPv6 address as the IPv4 address it carries.

One IPv6 host is normally given a whole /64 (SLAAC privacy addresses, or any address of its prefix). Counted per
128-bit address, each address would be a fresh client, so the per-client limit (20, "trying many accounts from one
address") and the per-pair limit (5) would never bind, and one machine would reach the per-e-mail total of 100 --
which then locks the owner out from everywhere.
"""

from __future__ import annotations

from tests.control_plane.dashboard.conftest import PASSWORD, BrowserFactory, UserFactory, sign_in


async def test_one_ipv6_host_is_one_client_for_the_per_client_limit(browser: BrowserFactory,
                                                                    make_user: UserFactory) -> None:
    await make_user()
    codes = []
    for n in range(21):  # 21 accounts tried by one machine, from addresses of its own /64
        address = f"2001:db8:1:2::{n + 1:x}"
        codes.append((await sign_in(browser(address=address), f"user{n}@example.com", "guess guess")).status_code)
    assert codes[:20] == [401] * 20
    assert codes[20] == 429, f"the 21st account tried from the same /64 answered {codes[20]}"
    # The next /64 is another client: its user signs in.
    assert (await sign_in(browser(address="2001:db8:1:3::1"))).status_code == 303


async def test_one_ipv6_host_cannot_guess_past_five_by_changing_its_interface_id(browser: BrowserFactory,
                                                                                 make_user: UserFactory) -> None:
    await make_user()
    codes = [(await sign_in(browser(address=f"2001:db8:1:2::{n + 1:x}"), password="guess guess")).status_code
             for n in range(6)]
    assert codes[5] == 429, f"the 6th guess of ana's password from the same /64 answered {codes[5]}: {codes}"
    # Ana, signing in from another network, is let in.
    assert (await sign_in(browser(address="2001:db8:9:9::1"), password=PASSWORD)).status_code == 303


async def test_an_ipv4_client_is_one_client_whether_or_not_it_is_seen_as_ipv4_mapped(
        browser: BrowserFactory, make_user: UserFactory) -> None:
    """A dual-stack socket names an IPv4 peer `::ffff:a.b.c.d`; behind a proxy the same client is `a.b.c.d`."""
    await make_user()
    codes = [(await sign_in(browser(address=address), password="guess guess")).status_code
             for address in ["203.0.113.7", "::ffff:203.0.113.7"] * 3]
    assert codes == [401] * 5 + [429], codes
