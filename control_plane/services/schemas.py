"""Request bodies: one pydantic model per resource and verb, the single source of validation and OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, field_validator

from control_plane.services.listing import PageQuery
from shared.passwords import Password
from shared.rules import Moment, Rules, Split
from shared.urls import MAX_URL_LENGTH, InvalidURL, normalize_destination_url
from shared.validity import MaxScans

DestinationType = Literal["url", "page", "chatbot", "knowledge_base"]
Status = Literal["active", "inactive", "archived"]
CodeType = Literal["url", "text", "email", "sms", "wifi", "event", "vcard"]
ParamKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ParamValue = Annotated[str, StringConstraints(max_length=512)]
ParamMap = Annotated[dict[ParamKey, ParamValue], Field(max_length=50)]
ParamPatch = Annotated[dict[ParamKey, ParamValue | None], Field(max_length=50)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Name = Annotated[str, StringConstraints(max_length=200)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The schema states what the server checks in a way a client (or a fuzzer) can follow: an absolute http(s)
# URL with a plain host, printable ASCII. The server also takes international hosts and non-ASCII paths and
# stores them encoded (shared.urls).
DestinationURL = Annotated[str, StringConstraints(max_length=MAX_URL_LENGTH),
                           WithJsonSchema({"type": "string", "maxLength": MAX_URL_LENGTH,
                                           "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._-]+(:[0-9]{1,4})?"
                                                      "([/?#][!-~]*)?$"})]


class DestinationIn(Body):
    """A destination, as given on create or as a JSON Merge Patch on update."""

    type: DestinationType | None = None
    url: DestinationURL | None = None
    page: UUID | None = None
    chatbot: UUID | None = None
    knowledge_base: UUID | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return normalize_destination_url(value)
        except InvalidURL as exc:
            raise ValueError(str(exc)) from None


class RoutingFields(Body):
    """Rules, split, validity and password (docs/rules.md), on codes and groups alike. On update, a list is
    replaced as a whole and `expired_destination` is merge-patched like `destination`."""

    rules: Rules | None = None
    split: Split | None = None
    valid_from: Moment | None = None
    valid_until: Moment | None = None
    max_scans: MaxScans | None = None
    expired_destination: DestinationIn | None = None
    password: Password | None = None


class QRCodeCreate(RoutingFields):
    kind: Literal["dynamic", "static"] = "dynamic"
    type: CodeType = "url"
    name: Name = ""
    slug: str | None = None
    domain: str | None = None
    group_id: Reference | None = None
    status: Status | None = None
    destination: DestinationIn | None = None
    content: dict[str, Any] | None = None
    url_params: ParamMap | None = None
    properties: ParamMap | None = None
    design: dict[str, Any] | None = None
    folder_id: Reference | None = None
    tags: Annotated[list[Tag], Field(max_length=10)] = []


class UpsertDestination(DestinationIn):
    type: Literal["url"] = "url"
    url: DestinationURL


class QRCodeUpsert(QRCodeCreate):
    """A create whose destination URL is the key: the live dynamic code with it is returned instead."""

    kind: Literal["dynamic"] = "dynamic"
    type: Literal["url"] = "url"
    destination: UpsertDestination


class QRCodeUpdate(RoutingFields):
    """JSON Merge Patch of a code: absent keys are kept, `null` clears."""

    name: Name | None = None
    group_id: Reference | None = None
    status: Status | None = None
    destination: DestinationIn | None = None
    content: dict[str, Any] | None = None
    url_params: ParamPatch | None = None
    properties: ParamPatch | None = None
    design: dict[str, Any] | None = None
    folder_id: Reference | None = None
    tags: Annotated[list[Tag], Field(max_length=10)] | None = None


class QRGroupCreate(RoutingFields):
    name: Name = ""
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    status: Status | None = None
    destination: DestinationIn | None = None
    url_params: ParamMap | None = None
    properties: ParamMap | None = None


class QRGroupUpdate(RoutingFields):
    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    status: Status | None = None
    destination: DestinationIn | None = None
    url_params: ParamPatch | None = None
    properties: ParamPatch | None = None


class MintCodes(Body):
    count: Annotated[int, Field(ge=1, le=10_000)]
    name_prefix: Name = ""
    tags: Annotated[list[Tag], Field(max_length=10)] = []
    design: dict[str, Any] | None = None


class BulkChanges(Body):
    """What a bulk update may set on every code it names (a PATCH of these fields, `null` clears); at least one."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    tags: Annotated[list[Tag], Field(max_length=10)] | None = None
    folder_id: Reference | None = None
    status: Status | None = None
    group_id: Reference | None = None


class QRCodeBulkUpdate(Body):
    ids: Annotated[list[Reference], Field(min_length=1, max_length=1000)]
    set: BulkChanges


IMMUTABLE_CODE_FIELDS = ("kind", "slug", "domain")
CodeSort = Literal["created_at", "-created_at", "name", "-scan_count"]


class QRCodeListQuery(PageQuery):
    group_id: str | None = None
    folder_id: str | None = None
    tag: str | None = None
    status: Status | None = None
    kind: Literal["dynamic", "static"] | None = None
    type: str | None = None
    standalone: Literal["true", "false"] | None = None
    q: str | None = None
    sort: CodeSort = "-created_at"


class QRGroupListQuery(PageQuery):
    status: Status | None = None
    q: str | None = None
