from __future__ import annotations

from shared.params import LocationTemplate, merge_url_params


def test_seed_example_child_wins_and_visitor_appends() -> None:
    location = merge_url_params(
        "https://pages.example.com/p/a1c2",
        [("utm_campaign", "fall24"), ("utm_medium", "print")],
        [("utm_medium", "table")],
        b"utm_source=email",
    )
    assert location == "https://pages.example.com/p/a1c2?utm_campaign=fall24&utm_medium=table&utm_source=email"


def test_destination_query_is_the_first_layer_and_fragment_stays_last() -> None:
    location = merge_url_params(
        "https://shop.example.com/menu?lang=en&utm_medium=web#drinks",
        [("utm_medium", "print")], [("table", "12")], b"lang=de",
    )
    assert location == "https://shop.example.com/menu?lang=de&utm_medium=print&table=12#drinks"


def test_repeated_visitor_key_keeps_all_values_in_place_of_the_stored_one() -> None:
    location = merge_url_params("https://x.example/", [("a", "1"), ("b", "2")], [], b"b=x&c=3&b=y")
    assert location == "https://x.example/?a=1&b=x&b=y&c=3"


def test_qr_marker_is_dropped_but_nothing_else() -> None:
    assert merge_url_params("https://x.example/p", [], [], b"qr=1") == "https://x.example/p"
    assert merge_url_params("https://x.example/p", [], [], b"qr=1&ref=a") == "https://x.example/p?ref=a"
    assert merge_url_params("https://x.example/p?qr=keep", [], [], b"qr=1") == "https://x.example/p?qr=keep"


def test_stored_values_are_percent_encoded() -> None:
    location = merge_url_params("https://x.example/", [], [("name", "a b&c=d+é")], b"")
    assert location == "https://x.example/?name=a%20b%26c%3Dd%2B%C3%A9"


def test_visitor_text_cannot_inject_headers_or_fragments() -> None:
    location = merge_url_params("https://x.example/", [], [], b"a=1%0d%0aSet-Cookie:x&b=\r\nEvil: 1&c=#frag&d=%zz")
    assert "\r" not in location and "\n" not in location and "#" not in location and " " not in location
    assert location == "https://x.example/?a=1%0d%0aSet-Cookie:x&b=%0D%0AEvil:%201&c=%23frag&d=%25zz"


def test_template_without_visitor_query_is_precomputed() -> None:
    template = LocationTemplate.build("https://x.example/a?z=1", [("y", "2")])
    assert template.render(b"") is template.location
    assert template.render(b"qr=1") is template.location


def test_rendered_bytes_are_the_rendered_location_for_every_query() -> None:
    template = LocationTemplate.build("https://x.example/a?z=1#f", [("y", "2 3")])
    other = LocationTemplate.build("https://x.example/b", [])
    for query in (b"", b"qr=1", b"qr=1&utm_source=email", b"z=9&a=%zz&b=\r\n", b"k=\xc3\xa9"):
        for _ in range(2):  # the second time from the memo
            assert template.render_bytes(query) == template.render(query).encode("ascii")
            assert other.render_bytes(query) == other.render(query).encode("ascii")


def test_a_location_template_from_non_ascii_settings_is_percent_encoded() -> None:
    template = LocationTemplate.build("https://pages.example.com/p/café", [])
    assert template.encoded == b"https://pages.example.com/p/caf%C3%A9"
