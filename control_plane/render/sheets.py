"""Label sheets: where each code and its label go on the page, and the print check (modules ≥ 0.4 mm)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import BinaryIO

from control_plane.render.design import Design
from control_plane.render.matrix import qr_matrix
from control_plane.render.output import geometry_for
from control_plane.render.pdf import MM, PageContent, PdfWriter, fit_text

MIN_MODULE_MM = 0.4  # below this, office printers and phone cameras lose modules
PAPERS = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}  # millimetres
LABEL_FONT_PT = 7.0
LABEL_BAND_MM = 4.0  # room for one line of label text under the code
PADDING_MM = 1.5  # kept free inside each label, so die-cut edges never clip a code
GRID_MARGIN_MM = 10.0  # page margin of a `grid` sheet
CROP_GAP_MM = 1.0  # crop marks start this far outside the outermost cut
CROP_MARK_MM = 6.0  # … and end this far out (clipped at the page edge)


@dataclass(frozen=True, slots=True)
class Template:
    """A label sheet as its maker specifies it, in millimetres from the top-left corner of the page."""

    paper: str
    columns: int
    rows: int
    label_width: float
    label_height: float
    left: float
    top: float
    pitch_x: float
    pitch_y: float


TEMPLATES = {
    "avery-l7160": Template("a4", 3, 7, 63.5, 38.1, 7.25, 15.15, 66.04, 38.1),
    "avery-l7163": Template("a4", 2, 7, 99.1, 38.1, 4.65, 15.15, 101.6, 38.1),
    "avery-5160": Template("letter", 3, 10, 66.675, 25.4, 4.7625, 12.7, 69.85, 25.4),
}


@dataclass(frozen=True, slots=True)
class Sheet:
    """A resolved layout: page size, cells, and the printed side of every code (all in millimetres)."""

    paper: str
    template: Template
    qr_size: float
    label: str  # name | slug | short_url | none
    crop_marks: bool

    @property
    def per_page(self) -> int:
        return self.template.columns * self.template.rows

    def cell(self, index: int) -> tuple[float, float]:
        """Top-left corner of cell `index` on its page."""
        t = self.template
        row, column = divmod(index % self.per_page, t.columns)
        return t.left + column * t.pitch_x, t.top + row * t.pitch_y


def _band(label: str) -> float:
    return 0.0 if label == "none" else LABEL_BAND_MM


def template_sheet(name: str, paper: str | None, label: str, crop_marks: bool) -> Sheet:
    template = TEMPLATES[name]
    if paper not in (None, template.paper):
        raise ValueError(f"{name} labels come on {template.paper.upper()} sheets")
    qr_size = min(template.label_width, template.label_height - _band(label)) - 2 * PADDING_MM
    return Sheet(template.paper, template, qr_size, label, crop_marks)


def grid_sheet(paper: str, columns: int, rows: int, qr_size: float, label: str, crop_marks: bool) -> Sheet:
    width, height = PAPERS[paper]
    pitch_x = (width - 2 * GRID_MARGIN_MM) / columns
    pitch_y = (height - 2 * GRID_MARGIN_MM) / rows
    if qr_size + 2 * PADDING_MM > pitch_x or qr_size + _band(label) + 2 * PADDING_MM > pitch_y:
        largest = min(pitch_x, pitch_y - _band(label)) - 2 * PADDING_MM
        raise ValueError(f"{columns}×{rows} cells on {paper.upper()} hold codes of at most {largest:.1f} mm")
    template = Template(paper, columns, rows, pitch_x, pitch_y, GRID_MARGIN_MM, GRID_MARGIN_MM, pitch_x, pitch_y)
    return Sheet(paper, template, qr_size, label, crop_marks)


def module_count(payload: str, design: Design) -> int:
    """Modules across the printed square, quiet zone included."""
    return qr_matrix(payload, design.effective_error_correction).width + 2 * design.margin


def smallest_size(modules: int) -> float:
    """The smallest printed side (mm, rounded up to 0.1) at which `modules` modules are ≥ 0.4 mm each."""
    return math.ceil(modules * MIN_MODULE_MM * 10 - 1e-9) / 10


@dataclass(frozen=True, slots=True)
class PrintItem:
    payload: str
    design: Design
    label: str
    logo_png: bytes | None = None


def _outside(first: float, last: float, page: float) -> tuple[tuple[float, float], ...]:
    """The two mark segments before the first cut and after the last one, within the page."""
    return ((first - CROP_GAP_MM, max(first - CROP_MARK_MM, 0.0)),
            (last + CROP_GAP_MM, min(last + CROP_MARK_MM, page)))


class SheetWriter:
    """Codes placed cell by cell; a page is written out as soon as it is full."""

    def __init__(self, out: BinaryIO, sheet: Sheet) -> None:
        self.sheet = sheet
        self.pdf = PdfWriter(out)
        self.page = PageContent()
        self.placed = 0

    def add(self, item: PrintItem) -> None:
        sheet = self.sheet
        index = self.placed % sheet.per_page
        if index == 0 and self.placed:
            self._flush()
        self.placed += 1
        left, top = sheet.cell(index)
        cell_w, cell_h = sheet.template.label_width, sheet.template.label_height
        page_h = PAPERS[sheet.paper][1]
        block = sheet.qr_size + _band(sheet.label)
        code_left = left + (cell_w - sheet.qr_size) / 2
        code_top = top + (cell_h - block) / 2
        x, y, size = code_left * MM, (page_h - code_top - sheet.qr_size) * MM, sheet.qr_size * MM
        geometry = geometry_for(item.payload, item.design)
        self.page.code(geometry, x, y, size)
        if geometry.logo is not None and item.logo_png is not None and item.design.logo is not None:
            digest = item.design.logo.sha256 or str(hash(item.logo_png))
            obj, width, height = self.pdf.logo_object(digest, item.logo_png)
            self.page.logo(f"Im{obj}", obj, (width, height), geometry, x, y, size)
        if sheet.label != "none" and item.label:
            text = fit_text(item.label, LABEL_FONT_PT, (cell_w - 2 * PADDING_MM) * MM)
            baseline = y - (LABEL_BAND_MM * MM + LABEL_FONT_PT * 0.75) / 2
            self.page.text(text, (left + cell_w / 2) * MM, baseline, LABEL_FONT_PT)

    def _crop_marks(self) -> None:
        """Marks in the page margins in line with every cut, so they never touch a code or a label."""
        t, (page_w, page_h) = self.sheet.template, PAPERS[self.sheet.paper]
        xs = sorted({round(t.left + c * t.pitch_x + d, 3) for c in range(t.columns) for d in (0, t.label_width)})
        ys = sorted({round(t.top + r * t.pitch_y + d, 3) for r in range(t.rows) for d in (0, t.label_height)})
        for x in xs:
            for start, end in _outside(ys[0], ys[-1], page_h):
                self.page.line(x * MM, (page_h - start) * MM, x * MM, (page_h - end) * MM)
        for y in ys:
            for start, end in _outside(xs[0], xs[-1], page_w):
                self.page.line(start * MM, (page_h - y) * MM, end * MM, (page_h - y) * MM)

    def _flush(self) -> None:
        if self.sheet.crop_marks:
            self._crop_marks()
        width, height = PAPERS[self.sheet.paper]
        self.pdf.add_page(width * MM, height * MM, self.page)
        self.page = PageContent()

    def close(self) -> None:
        if self.placed or not self.pdf.pages:
            self._flush()
        self.pdf.close()


def single_code_pdf(out: BinaryIO, item: PrintItem, size_mm: float) -> None:
    """One code on a page of exactly its size (the `zip` export's `pdf` files)."""
    pdf = PdfWriter(out)
    page = PageContent()
    geometry = geometry_for(item.payload, item.design)
    size = size_mm * MM
    page.code(geometry, 0, 0, size)
    if geometry.logo is not None and item.logo_png is not None and item.design.logo is not None:
        obj, width, height = pdf.logo_object(item.design.logo.sha256 or "logo", item.logo_png)
        page.logo(f"Im{obj}", obj, (width, height), geometry, 0, 0, size)
    pdf.add_page(size, size, page)
    pdf.close()
