from __future__ import annotations

import io

from PIL import Image, ImageDraw


def logo_png(side: int = 200) -> bytes:
    """A plain brand-like mark: a blue disc with a white bar, on transparency."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0, 0, side - 1, side - 1), fill=(20, 90, 200, 255))
    draw.rectangle((side // 4, side * 2 // 5, side * 3 // 4, side * 3 // 5), fill=(255, 255, 255, 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()
