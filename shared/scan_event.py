"""The scan event: written by the edge to the scan stream, read by the ingest worker.

This dataclass is the one definition of the stream's record. The ingest worker turns it into a row of
the `scans` table (control_plane.ingest.scan_row), reading its fields by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import msgspec
import orjson

# The scan times an event may carry (unix milliseconds, [0, LATEST_TS_MS)): a UUIDv7's time is never before
# 1970, and a scan of the last day of year 9999 would have no next hour or day to be counted and stored in.
LATEST_TS_MS = 253_402_214_400_000  # 9999-12-31T00:00:00Z


@dataclass(slots=True)
class ScanEvent:
    scan_id: str  # UUIDv7 made by the edge: the dedupe key downstream
    ts_ms: Annotated[int, msgspec.Meta(ge=0, lt=LATEST_TS_MS)]  # unix milliseconds, taken from the scan_id
    code_id: str
    group_id: str | None
    org_id: str
    livemode: bool
    outcome: str  # redirected | inactive | archived | unconfigured | deleted | scheduled | expired | password_…
    method: str  # GET | HEAD | POST (a password sent)
    marker: bool  # the `qr` marker printed in every image was present
    ip_hash: str
    visitor_hash: str
    user_agent: str = ""
    referer: str = ""
    accept_language: str = ""
    country: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    rule: int | None = None  # index of the rule that chose the destination (docs/rules.md)
    variant: int | None = None  # index of the split variant that chose it

    def encode(self) -> bytes:
        return orjson.dumps(self)  # orjson writes dataclasses natively, ten times faster than asdict()

    @staticmethod
    def decode(raw: bytes) -> ScanEvent:
        """Raises ValueError (msgspec.ValidationError) when `raw` is not a scan event: not JSON, a field
        missing or of the wrong type, a time out of range (LATEST_TS_MS). Fields it does not know are ignored
        (an edge newer than its workers)."""
        return _DECODER.decode(raw)


def event_head(code_id: str, group_id: str | None, org_id: str, livemode: bool, properties: dict[str, str]) -> bytes:
    """The members of a code's scan events that are the same for every scan of it (the code's identity and
    merged properties), JSON-encoded once when its row enters the edge's local cache, without the closing
    brace; `finish_event` adds a scan's own members. Bytes rather than an object holding them: the edge keeps
    one per cached code, and bytes are nothing the cycle collector traverses (edge/heap.py)."""
    encoded = orjson.dumps({"code_id": code_id, "group_id": group_id, "org_id": org_id, "livemode": livemode,
                            "properties": properties})
    return encoded[:-1] + b","


def finish_event(head: bytes, scan: dict[str, object]) -> bytes:
    """The whole event: `head`'s members and `scan`'s (every other field of ScanEvent). `ScanEvent.decode`
    reads it like `ScanEvent.encode`'s (a JSON object's members in any order)."""
    return head + orjson.dumps(scan)[1:]


# msgspec builds the dataclass straight from the JSON, checking every field's type: twice as fast as
# orjson.loads followed by ScanEvent(**fields), which checks nothing.
_DECODER = msgspec.json.Decoder(ScanEvent)
