"""Custom short-URL hosts. A hostname belongs to one organisation; one that live codes use cannot go."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import asyncpg
from pydantic import StringConstraints, WithJsonSchema, field_validator
from typing_extensions import TypedDict

from control_plane.services.cache import retired_domain
from control_plane.services.context import ServiceContext
from control_plane.services.keys import ApiKey
from control_plane.services.listing import Listing, PageQuery, owned_page
from control_plane.services.schemas import Body
from shared.hostnames import MAX_INPUT, InvalidHostname, canonical_hostname
from shared.ids import new_id
from shared.problems import Problem, field_error, not_found
from shared.times import timestamp

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A port from 1 to 65535 without leading zeros: the edge answers no `Host` with another (docs/api.md §3.4).
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# The last label begins with a letter, as every top-level domain does (RFC 3696 §2): a name whose last label
# is all digits is an IPv4 address, perhaps the edge's own, and scans of http://<address>/… would reach this
# organisation's codes (docs/api.md §2.3).
_TOP_LABEL = r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# The canonical form, stated in the schema: letters, digits and inner hyphens, two labels at least, a port. The
# server also takes a name in Unicode (or mixed case, or with a trailing dot) and stores it in this form; an
# `xn--` label must be the A-label of a valid IDNA 2008 name, which no pattern can state (docs/api.md §2.3).
HOSTNAME = rf"^({_LABEL}\.)+{_TOP_LABEL}(:{_PORT})?$"
_CANONICAL = re.compile(HOSTNAME)
_NAME_AND_PORT = re.compile(r"(?P<name>[^:]*?)\.?(?::(?P<port>[^:]*))?")
OWNED = "id = $1 AND org_id = $2 AND livemode = $3"


def host_of(hostname: str) -> str:
    """The name without its port: what a client may send in `Host` with the port or without it."""
    return hostname.partition(":")[0]


def canonical_domain(value: str) -> str:
    """A domain as stored and as the edge matches `Host`: A-labels in lower case, no trailing dot, the port as
    given; ValueError saying why a name cannot be one (docs/api.md §2.3)."""
    given = _NAME_AND_PORT.fullmatch(value)
    if given is None:
        raise ValueError("must be a host name with an optional port (go.example.com, links.example.com:8443)")
    try:
        name = canonical_hostname(given["name"])
    except InvalidHostname as exc:
        raise ValueError(f"is not a valid host name: {exc}") from None
    domain = name if given["port"] is None else f"{name}:{given['port']}"
    if not _CANONICAL.fullmatch(domain):
        raise ValueError("must be two labels or more, the last beginning with a letter, with an optional port from"
                         " 1 to 65535 (go.example.com, links.example.com:8443)")
    return domain


class DomainBody(Body):
    hostname: Annotated[str, StringConstraints(min_length=3, max_length=MAX_INPUT),
                        # No pattern: a name in Unicode, mixed case or with a trailing dot is taken too, and whether an
                        # `xn--` label is valid no pattern can state; the stored form is `DomainPublic`'s.
                        WithJsonSchema({"type": "string", "minLength": 3, "maxLength": MAX_INPUT,
                                        "description": "A host name, a port perhaps (go.example.com,"
                                                       " links.example.com:8443); stored in lower-case A-labels"})]

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        return canonical_domain(value)


class DomainPublic(TypedDict):
    id: str
    object: Literal["domain"]
    livemode: bool
    hostname: str
    created_at: str


def domain_object(row: asyncpg.Record) -> DomainPublic:
    return {"id": row["id"], "object": "domain", "livemode": row["livemode"], "hostname": row["hostname"],
            "created_at": timestamp(row["created_at"])}


def _taken(hostname: str) -> Problem:
    return Problem(409, f"{hostname} is already registered.", type="domain-taken")


async def create_domain(ctx: ServiceContext, key: ApiKey, body: DomainBody) -> DomainPublic:
    host = host_of(body.hostname)
    if host == host_of(ctx.settings.default_domain):  # with a port or not
        raise field_error("hostname", "is the default domain, which every organisation already uses")
    try:
        async with ctx.transaction() as conn:
            # A host is one organisation's under every port: go.acme.com:443 taken by another would answer
            # clients that send the port on Acme's name. The lock orders concurrent claims of one host.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"domain-host|{host}")
            if await conn.fetchval("SELECT 1 FROM domains WHERE split_part(hostname, ':', 1) = $1 AND org_id <> $2",
                                   host, key.org_id):
                raise _taken(body.hostname)
            row = await conn.fetchrow(
                "INSERT INTO domains (id, org_id, livemode, hostname) VALUES ($1, $2, $3, $4) RETURNING *",
                new_id("dom"), key.org_id, key.livemode, body.hostname)
    except asyncpg.UniqueViolationError:
        raise _taken(body.hostname) from None
    assert row is not None
    return domain_object(row)


async def list_domains(ctx: ServiceContext, key: ApiKey, page: PageQuery) -> Listing[DomainPublic]:
    rows, total = await owned_page(ctx.db, "domains", key, page)
    return Listing([domain_object(r) for r in rows], total, page.limit, page.offset)


async def get_domain(ctx: ServiceContext, key: ApiKey, domain_id: str) -> DomainPublic:
    row = await ctx.db.fetchrow(f"SELECT * FROM domains WHERE {OWNED}", domain_id, key.org_id, key.livemode)
    if row is None:
        raise not_found("domain")
    return domain_object(row)


async def delete_domain(ctx: ServiceContext, key: ApiKey, domain_id: str) -> None:
    async with ctx.transaction() as conn:
        hostname = await conn.fetchval(f"SELECT hostname FROM domains WHERE {OWNED} FOR UPDATE",
                                       domain_id, key.org_id, key.livemode)
        if hostname is None:
            raise not_found("domain")
        in_use = await conn.fetchval("SELECT count(*) FROM qr_codes WHERE domain = $1 AND deleted_at IS NULL",
                                     hostname)
        if in_use:
            raise Problem(409, f"{hostname} is used by {in_use} live codes; delete or keep them first.",
                          type="domain-in-use")
        # The deleted codes on the host leave it too: it may go to another organisation next, whose slugs they
        # must not take and whose visitors' scans they must not answer (docs/api.md §2.3). Renamed, not
        # removed, as their scans and events still name them; no edge resolves a `Host` with a colon inside.
        # The new version is what takes their rows off the host in Redis: this write-through, or the cache
        # sync's walk of changed codes when it is lost (docs/freshness.md, "The cache sync's cursor").
        retired = [r["id"] for r in await conn.fetch(
            "UPDATE qr_codes SET domain = $2, version = version + 1, updated_at = now()"
            " WHERE domain = $1 AND deleted_at IS NOT NULL AND slug IS NOT NULL RETURNING id",
            hostname, retired_domain(domain_id, hostname))]
        await conn.execute("DELETE FROM domains WHERE hostname = $1", hostname)
    await ctx.cache.publish_codes(ctx.db, retired)
