"""Pages of an organisation's objects, and the list envelope every list answers with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, NotRequired, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from control_plane.services.keys import ApiKey

T = TypeVar("T")
MAX_OFFSET = 10_000_000


class PageQuery(BaseModel):
    """`limit` and `offset` of every list; unknown query parameters are ignored."""

    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=100)] = 25
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET)] = 0


class ListEnvelope(TypedDict, Generic[T]):
    """What every list answers; a bulk mint answers only `object`, `data` and `total`."""

    object: Literal["list"]
    data: list[T]
    total: int
    limit: NotRequired[int]
    offset: NotRequired[int]
    has_more: NotRequired[bool]


class Choice(TypedDict):
    """One option of a picker that offers every object of a kind: a form must be able to show the one it holds."""

    id: str
    name: str


# `q` is a substring (docs/api.md §2.1), not a LIKE pattern: `%`, `_` and the escape character itself match
# only themselves. Use as f"column ILIKE $n {LIKE_ESCAPE}" with `contains_pattern(q)` as $n.
LIKE_ESCAPE = "ESCAPE '\\'"


def contains_pattern(text: str) -> str:
    """The ILIKE pattern (with LIKE_ESCAPE) matching any text that contains `text`."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    data: list[T]
    total: int
    limit: int
    offset: int

    def envelope(self) -> ListEnvelope[T]:
        return {"object": "list", "data": self.data, "total": self.total, "limit": self.limit,
                "offset": self.offset, "has_more": self.offset + len(self.data) < self.total}


async def owned_page(db: asyncpg.Pool[Any], table: str, key: ApiKey, page: PageQuery, *, where: str = "",
                     args: Sequence[Any] = (), order: str = "created_at DESC, id",
                     columns: str = "*") -> tuple[list[asyncpg.Record], int]:
    """One page of the caller's org's and mode's rows of `table` (`columns` of them), and how many in all."""
    clause = "org_id = $1 AND livemode = $2" + (f" AND {where}" if where else "")
    total: int = await db.fetchval(f"SELECT count(*) FROM {table} WHERE {clause}", key.org_id, key.livemode, *args)
    rows = await db.fetch(f"SELECT {columns} FROM {table} WHERE {clause} ORDER BY {order}"
                          f" LIMIT {page.limit} OFFSET {page.offset}", key.org_id, key.livemode, *args)
    return rows, total
