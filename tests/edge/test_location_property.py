"""docs/api.md §3.1.5 as a property: visitor input never changes the destination's scheme or host, and never
puts CR, LF, spaces or raw non-ASCII into `Location`; the destination's fragment stays last."""

from __future__ import annotations

from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from shared.params import LocationTemplate
from shared.urls import normalize_destination_url

texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
hosts = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,8}){0,2}", fullmatch=True)
params = st.lists(st.tuples(texts.filter(bool), texts), max_size=4)


@st.composite
def destinations(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    path = draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs")), max_size=10))
    query = draw(st.from_regex(r"([a-z]{1,3}=[a-z0-9]{0,3}&?){0,3}", fullmatch=True))
    fragment = draw(st.from_regex(r"[a-zA-Z0-9/=-]{0,6}", fullmatch=True))
    url = f"{scheme}://{draw(hosts)}{port}/{path.replace('?', '').replace('#', '')}"
    url += f"?{query}" if query else ""
    url += f"#{fragment}" if fragment else ""
    return normalize_destination_url(url)


@given(destinations(), params, params, st.binary(max_size=60))
def test_visitor_input_cannot_break_the_location(destination: str, group: list[tuple[str, str]],
                                                 code: list[tuple[str, str]], visitor: bytes) -> None:
    location = LocationTemplate.build(destination, group, code).render(visitor)
    target, result = urlsplit(destination), urlsplit(location)
    assert (result.scheme, result.netloc) == (target.scheme, target.netloc)
    assert result.path == target.path
    assert location.isascii() and location.isprintable()
    assert not any(c in location for c in "\r\n\t ")
    if target.fragment:
        assert location.endswith(f"#{target.fragment}") and location.count("#") == 1
    else:
        assert "#" not in location
