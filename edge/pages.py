"""The small self-contained HTML pages the edge answers with when it does not redirect."""

from __future__ import annotations

from importlib import resources

# outcome → page file
_FILES = {"unknown": "unknown", "inactive": "inactive", "unconfigured": "unconfigured", "archived": "gone",
          "deleted": "gone", "unavailable": "unavailable"}


def load_pages() -> dict[str, bytes]:
    folder = resources.files("edge") / "pages"
    return {outcome: (folder / f"{name}.html").read_bytes() for outcome, name in _FILES.items()}
