"""The design of a code (docs/api.md §2.6): validation, defaults and named style presets."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from shared.problems import Problem, from_validation_error

Hex = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$", to_lower=True)]
ErrorCorrection = Literal["L", "M", "Q", "H"]
Format = Literal["png", "svg", "webp"]
GradientType = Literal["linear-top-to-bottom", "linear-left-to-right", "linear-diagonal", "radial"]
BodyShape = Literal["square", "dots", "rounded", "classy"]
EyeShape = Literal["square", "rounded", "circle"]

MIN_SIZE, MAX_SIZE = 200, 2048
# A logo hides modules; below Q the code has too little redundancy to lose any (docs/api.md: a logo forces ≥ Q).
LOGO_MIN_LEVEL: ErrorCorrection = "Q"
_LEVELS = "LMQH"


class _Part(BaseModel):
    # Strict: a design comes as JSON (or from the dashboard, already typed), where "4" is no margin and 1 no
    # boolean.
    model_config = ConfigDict(extra="forbid", strict=True)


class Colors(_Part):
    foreground: Hex = "#000000"
    background: Hex = "#ffffff"


class Gradient(_Part):
    start: Hex
    end: Hex
    type: GradientType = "linear-top-to-bottom"


class Shapes(_Part):
    body: BodyShape = "square"
    eye_frame: EyeShape = "square"
    eye_ball: EyeShape = "square"


class EyeColors(_Part):
    frame: Hex
    ball: Hex


UPLOADED_LOGO = re.compile(r"/logos/([0-9a-f]{64})\.png")


class Logo(_Part):
    # An https URL, an upload as a `data:image/…;base64,` URL, or `/logos/{sha256}.png` (an earlier upload).
    url: Annotated[str, StringConstraints(min_length=1, max_length=1_500_000)]
    clear_background: bool = True
    scale: Annotated[float, Field(ge=0.1, le=0.3)] = 0.2
    # Set by the server when it fetched the logo: the SHA-256 of the image it embeds (read-only).
    sha256: str | None = None

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not (value.lower().startswith(("https://", "http://", "data:")) or UPLOADED_LOGO.fullmatch(value)):
            raise ValueError("must be an https URL, a data: URL or /logos/{sha256}.png")
        return value


class Design(_Part):
    error_correction: ErrorCorrection = "M"
    size: Annotated[int, Field(ge=MIN_SIZE, le=MAX_SIZE)] = 512
    margin: Annotated[int, Field(ge=0, le=16)] = 4
    format: Format = "png"
    colors: Colors = Colors()
    gradient: Gradient | None = None
    shapes: Shapes = Shapes()
    eye_colors: EyeColors | None = None
    logo: Logo | None = None
    transparent_background: bool = False
    style_preset: str = "default"

    @property
    def effective_error_correction(self) -> ErrorCorrection:
        if self.logo is not None and _LEVELS.index(self.error_correction) < _LEVELS.index(LOGO_MIN_LEVEL):
            return LOGO_MIN_LEVEL
        return self.error_correction


# Named styles. A preset sets every style field (colours, gradient, shapes, eye colours), so switching
# presets on PATCH replaces the old style whole; fields given explicitly in the same request still win.
_PLAIN: dict[str, Any] = {"colors": {"foreground": "#000000", "background": "#ffffff"}, "gradient": None,
                          "shapes": {"body": "square", "eye_frame": "square", "eye_ball": "square"},
                          "eye_colors": None}
PRESETS: dict[str, dict[str, Any]] = {
    "default": _PLAIN,
    "rounded": {**_PLAIN, "shapes": {"body": "rounded", "eye_frame": "rounded", "eye_ball": "rounded"}},
    "dots": {**_PLAIN, "shapes": {"body": "dots", "eye_frame": "circle", "eye_ball": "circle"}},
    "classy": {**_PLAIN, "colors": {"foreground": "#1b2a4a", "background": "#ffffff"},
               "shapes": {"body": "classy", "eye_frame": "rounded", "eye_ball": "square"}},
    "sunset": {**_PLAIN, "gradient": {"start": "#6a1b9a", "end": "#c62828", "type": "linear-diagonal"},
               "shapes": {"body": "rounded", "eye_frame": "rounded", "eye_ball": "circle"},
               "eye_colors": {"frame": "#4a148c", "ball": "#b71c1c"}},
}


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7396): `null` removes a key, objects merge, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _preset(name: Any) -> dict[str, Any]:
    if not isinstance(name, str) or name not in PRESETS:
        raise Problem(422, f"Unknown style preset {name!r}.", errors=[
            {"field": "design.style_preset", "message": f"must be one of {', '.join(PRESETS)}"}])
    return PRESETS[name]


def parse_design(raw: dict[str, Any] | None) -> Design:
    """Validate a design and fill it in from its preset and the defaults; 422 problem on a bad field."""
    raw = dict(raw or {})
    base = merge_patch({}, _preset(raw.get("style_preset") or "default"))  # drops the preset's nulls
    try:
        return Design.model_validate(merge_patch(base, raw))
    except ValidationError as exc:
        raise from_validation_error(exc, prefix="design.") from None


def merge_design(stored: dict[str, Any] | None, patch: dict[str, Any] | None) -> dict[str, Any] | None:
    """A design PATCH: JSON Merge Patch, except that a new `style_preset` first replaces the old style."""
    if patch is None:
        return None
    base = dict(stored or {})
    preset = patch.get("style_preset")
    if preset is not None and preset != base.get("style_preset"):
        base = merge_patch(base, _preset(preset))
    merged: dict[str, Any] = merge_patch(base, patch)
    return merged


def design_dict(design: Design) -> dict[str, Any]:
    """The normalised JSON form stored with a code and shown by the API."""
    data = design.model_dump(mode="json")
    data["error_correction"] = design.effective_error_correction
    return data
