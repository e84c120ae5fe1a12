"""Charts drawn on the server as SVG by leather: no chart code runs in the browser, nothing is fetched.

leather writes presentation attributes only (no <style>, no script), so the SVG sits inline in the page
under the dashboard's Content Security Policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import leather

WIDTH, HEIGHT = 900, 320
FONT = "system-ui, sans-serif"
# Contrast 4.5:1 or better on the white background (leather's defaults are lighter greys).
for _name, _value in {
    "background_color": "#ffffff", "label_color": "#4d4d4d", "legend_color": "#1a1a1a", "tick_color": "#e3e3e3",
    "zero_color": "#767676", "title_font_family": FONT, "legend_font_family": FONT, "axis_title_font_family": FONT,
    "tick_font_family": FONT, "default_series_colors": ["#0b57d0", "#146c2e", "#8a4b00"],
}.items():
    setattr(leather.theme, _name, _value)


def _ticks(top: int) -> list[int]:
    """Whole-number y ticks from 0 to at least `top`, about five of them."""
    step = max(1, 10 ** math.floor(math.log10(max(top, 1) / 5)) if top >= 5 else 1)
    while top / step > 6:
        step *= 2 if str(step)[0] == "1" else 2.5 if str(step)[0] == "2" else 2
    step = int(step)
    return list(range(0, top + step, step)) if top else [0, 1]


def timeseries_chart(buckets: Sequence[Mapping[str, Any]], group_by: str) -> str:
    """Scans and unique visitors per bucket as inline SVG, scaled to its container by its viewBox."""
    # leather compares naive datetimes; every bucket is UTC.
    times = [datetime.fromisoformat(b["bucket"].removesuffix("Z")) for b in buckets]
    scans = [int(b["scans"]) for b in buckets]
    uniques = [int(b["uniques"]) for b in buckets]
    ticks = _ticks(max(scans, default=0))
    chart = leather.Chart()
    chart.add_y_scale(0, ticks[-1])
    chart.add_y_axis(ticks=ticks)
    label = "%d %b" if group_by == "day" else "%d %b %H:00"
    chart.add_x_axis(tick_formatter=lambda value, index, count: value.strftime(label))
    chart.add_line(list(zip(times, scans, strict=True)), name="Scans", width=3)
    chart.add_line(list(zip(times, uniques, strict=True)), name="Unique visitors", width=2,
                   stroke_dasharray="6 4")
    svg: str = chart.to_svg(width=WIDTH, height=HEIGHT)
    # A viewBox lets CSS scale the chart to a phone's width; leather sets only width and height.
    return svg.replace(f'<svg width="{WIDTH}" height="{HEIGHT}"',
                       f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" focusable="false" aria-hidden="true"', 1)
