"""The export formats as synchronous writers into a `Buffer` (run in a thread; the worker drains the buffer
into the file store after every batch, so memory holds one batch, never the whole file)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from control_plane.render.output import render_bytes, render_raster
from control_plane.render.scannability import MAX_CHECK_SIZE, readable_size
from control_plane.render.sheets import PrintItem, single_code_pdf
from control_plane.services.exports import check_image_size, image_pixels

MANIFEST_COLUMNS = ("id", "slug", "short_url", "name", "group", "folder", "tags", "file")
CODES_COLUMNS = ("id", "kind", "name", "slug", "short_url", "destination_type", "url", "group_id", "folder_id",
                 "tags", "status", "scan_count", "created_at")
SCANS_COLUMNS = ("scan_id", "scanned_at", "code_id", "group_id", "outcome", "scan_method", "is_bot", "country",
                 "device_type", "os", "browser", "scanner_app", "referer", "accept_language", "user_agent",
                 "visitor_hash")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class Buffer:
    """A write-only file for zipfile, csv and the PDF writer; `take()` hands over what was written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (user text starting with = + - @)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_lines(rows: Iterable[Iterable[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue().encode("utf-8")


@dataclass(frozen=True, slots=True)
class ZipEntry:
    item: PrintItem
    file: str
    code_id: str


class ZipWriter:
    """manifest.csv first (streamed), then one image per code named by slug."""

    def __init__(self, out: Buffer, image_format: str, size_mm: float, dpi: int) -> None:
        # Checked when requested; again here for a job queued before that check existed, since a canvas
        # over the cap can take more memory than the worker has.
        check_image_size(image_format, size_mm, dpi)
        self.zip = zipfile.ZipFile(out, "w")  # type: ignore[call-overload]  # write/tell/flush is all it needs
        self.format = image_format
        self.size_mm = size_mm
        self.dpi = dpi
        # Every PNG up to MAX_CHECK_SIZE px is decoded as a download of it would be (docs/exports.md, "The print
        # check"): (code id, a size that reads) for each one that does not, and the job fails on them.
        self.decode = image_format == "png" and image_pixels(size_mm, dpi) <= MAX_CHECK_SIZE
        self.unreadable: list[tuple[str, int]] = []
        # The first entry, with its header even when no code is left to list (all deleted since the request).
        self.manifest: Any = self.zip.open("manifest.csv", "w")
        self.manifest.write(csv_lines([MANIFEST_COLUMNS]))

    def manifest_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self.manifest.write(csv_lines(rows))

    def add(self, entries: list[ZipEntry]) -> None:
        if self.manifest is not None:
            self.manifest.close()
            self.manifest = None
        for entry in entries:
            data = self._image(entry)
            compress = zipfile.ZIP_STORED if self.format == "png" else zipfile.ZIP_DEFLATED
            self.zip.writestr(zipfile.ZipInfo(entry.file, date_time=(2026, 1, 1, 0, 0, 0)), data, compress)

    def _image(self, entry: ZipEntry) -> bytes:
        item = entry.item
        if self.format == "pdf":
            out = io.BytesIO()
            single_code_pdf(out, item, self.size_mm)
            return out.getvalue()
        pixels = image_pixels(self.size_mm, self.dpi)
        if self.format == "svg":
            svg = render_bytes(item.payload, item.design, "svg", pixels, item.logo_png)
            # Physical size, so that the SVG prints at size_mm whatever program opens it.
            return svg.replace(f'width="{pixels}" height="{pixels}"'.encode(),
                               f'width="{self.size_mm:g}mm" height="{self.size_mm:g}mm"'.encode(), 1)
        image = render_raster(item.payload, item.design, pixels, item.logo_png)
        if self.decode:
            readable = readable_size(item.payload, item.design, pixels, image, item.logo_png)
            if readable != pixels:
                self.unreadable.append((entry.code_id, readable))
        out = io.BytesIO()
        image.save(out, "PNG", dpi=(self.dpi, self.dpi), compress_level=6)
        return out.getvalue()

    def close(self) -> None:
        if self.manifest is not None:
            self.manifest.close()
        self.zip.close()


class UniqueNames:
    """File names by slug; a slug used twice (on two domains), or differing from another only in case, gets the
    code id appended: slugs are case-sensitive, file systems on macOS and Windows are not, and unzipping there
    would let one file overwrite the other."""

    def __init__(self, extension: str) -> None:
        self.extension = extension
        self.used: set[str] = set()  # casefolded

    def name(self, code_id: str, slug: str | None) -> str:
        stem = slug or code_id
        if stem.casefold() in self.used:
            stem = f"{stem}-{code_id}"
        self.used.add(stem.casefold())
        return f"{stem}.{self.extension}"
