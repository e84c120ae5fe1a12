"""The small self-contained HTML pages the edge answers with when it does not redirect."""

from __future__ import annotations

from importlib import resources

# outcome → page file
_FILES = {"unknown": "unknown", "inactive": "inactive", "unconfigured": "unconfigured", "archived": "gone",
          "deleted": "gone", "unavailable": "unavailable", "scheduled": "scheduled", "expired": "expired"}
# The password form, by answer: the note under it (docs/rules.md, "Passwords").
_PASSWORD_NOTES = {"password_prompt": "", "password_failed": '<p class="note">Wrong password. Try again.</p>',
                   "password_throttled": '<p class="note">Too many attempts. Please wait a moment.</p>'}


def load_pages() -> dict[str, bytes]:
    folder = resources.files("edge") / "pages"
    pages = {outcome: (folder / f"{name}.html").read_bytes() for outcome, name in _FILES.items()}
    form = (folder / "password.html").read_bytes()
    pages.update({answer: form.replace(b"{note}", note.encode()) for answer, note in _PASSWORD_NOTES.items()})
    return pages
