"""Previous/next links of a list page, keeping its other query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from control_plane.services.listing import Listing


@dataclass(frozen=True, slots=True)
class Pages:
    first: int  # 1-based number of the first row shown
    last: int
    total: int
    previous: str | None
    next: str | None


def pages(request: Request, listing: Listing[Any]) -> Pages:
    params = {k: v for k, v in request.query_params.items() if v and k != "offset"}

    def link(offset: int) -> str:
        return f"{request.url.path}?{urlencode({**params, 'offset': offset})}"

    previous = link(max(0, listing.offset - listing.limit)) if listing.offset > 0 else None
    following = link(listing.offset + listing.limit) if listing.offset + len(listing.data) < listing.total else None
    return Pages(listing.offset + 1 if listing.data else 0, listing.offset + len(listing.data), listing.total,
                 previous, following)
