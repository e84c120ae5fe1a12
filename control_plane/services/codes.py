"""QR code objects as the API shows them and every event carries them: one definition for every caller."""

from __future__ import annotations

from typing import Any

import asyncpg

from control_plane.render.images import image_url, payload_for, preview_url
from control_plane.services.destinations import destination_object
from control_plane.services.params import pairs_to_dict
from shared.edge_rows import CODE_COLUMNS, code_row, load_groups
from shared.resolve import resolve
from shared.rows import GroupRow
from shared.settings import ControlPlaneSettings
from shared.times import timestamp

SELECT = f"""
SELECT {CODE_COLUMNS}, c.kind, c.type, c.name, c.slug, c.domain, c.content, c.design, c.folder_id, c.tags,
    c.scan_count, c.created_at, c.updated_at
FROM qr_codes c"""
OWNED = "c.org_id = $1 AND c.livemode = $2 AND c.deleted_at IS NULL"
SORTS = {"created_at": "c.created_at, c.id", "-created_at": "c.created_at DESC, c.id DESC",
         "name": "c.name, c.id", "-scan_count": "c.scan_count DESC, c.id"}


def resolved_object(row: asyncpg.Record, group: GroupRow | None, settings: ControlPlaneSettings) -> dict[str, Any]:
    resolution = resolve(code_row(row), group, settings.templates)
    return {
        "status": resolution.status,
        "destination": resolution.destination.compact() if resolution.destination else None,
        "source": resolution.source,
        "url": resolution.location.location if resolution.location else None,
    }


def code_object(row: asyncpg.Record, group: GroupRow | None, settings: ControlPlaneSettings) -> dict[str, Any]:
    dynamic = row["kind"] == "dynamic"
    payload = payload_for(row, settings)
    return {
        "id": row["id"], "object": "qr_code", "livemode": row["livemode"], "kind": row["kind"],
        "type": row["type"], "name": row["name"], "slug": row["slug"], "domain": row["domain"],
        "short_url": f"{settings.public_scheme}://{row['domain']}/{row['slug']}" if dynamic else None,
        "group_id": row["group_id"], "status": row["status"], "destination": destination_object(row),
        "content": row["content"], "url_params": pairs_to_dict(row["url_params"]),
        "properties": pairs_to_dict(row["properties"]), "design": row["design"], "folder_id": row["folder_id"],
        "tags": row["tags"], "resolved": resolved_object(row, group, settings) if dynamic else None,
        "image_url": image_url(settings, payload, row["design"]),
        "download_url": f"/v1/qr-codes/{row['id']}/download",
        "preview_url": preview_url(settings, payload, row["design"]),
        "scan_count": row["scan_count"] if dynamic else None,
        "created_at": timestamp(row["created_at"]), "updated_at": timestamp(row["updated_at"]),
    }


async def code_objects(db: asyncpg.Pool[Any] | asyncpg.Connection[Any], rows: list[asyncpg.Record],
                       settings: ControlPlaneSettings) -> list[dict[str, Any]]:
    groups = await load_groups(db, sorted({r["group_id"] for r in rows if r["group_id"]}))
    return [code_object(r, groups.get(r["group_id"]), settings) for r in rows]


