"""Arguments of `scanroute export` and `scanroute import` (kept apart so that parsing loads nothing heavy)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

Command = Callable[[argparse.Namespace], int]


def add_export_arguments(export: argparse.ArgumentParser, run: Command) -> None:
    export.add_argument("--org", required=True, help="organisation name")
    export.add_argument("--test", action="store_true", help="test-mode codes")
    export.add_argument("--format", required=True, choices=("pdf_sheet", "zip", "codes_csv", "scans_csv"))
    export.add_argument("--group-id")
    export.add_argument("--code-ids", help="comma-separated")
    export.add_argument("--folder-id")
    export.add_argument("--tag")
    export.add_argument("--template", help="avery-l7160, avery-l7163, avery-5160 or grid")
    export.add_argument("--paper", choices=("a4", "letter"))
    export.add_argument("--columns", type=int)
    export.add_argument("--rows", type=int)
    export.add_argument("--qr-size-mm", type=float)
    export.add_argument("--label", choices=("name", "slug", "short_url", "none"))
    export.add_argument("--crop-marks", action="store_true")
    export.add_argument("--image-format", choices=("svg", "png", "pdf"))
    export.add_argument("--size-mm", type=float)
    export.add_argument("--dpi", type=int)
    export.add_argument("--since", help="scans_csv: RFC 3339 start")
    export.add_argument("--until", help="scans_csv: RFC 3339 end")
    export.add_argument("-o", "--output", required=True, type=Path, help="file to write")
    export.set_defaults(run=run)


def add_import_arguments(imp: argparse.ArgumentParser, run: Command) -> None:
    imp.add_argument("file", type=Path)
    imp.add_argument("--org", required=True, help="organisation name")
    imp.add_argument("--test", action="store_true", help="create test-mode codes")
    imp.add_argument("--dry-run", action="store_true", help="validate only")
    imp.set_defaults(run=run)
