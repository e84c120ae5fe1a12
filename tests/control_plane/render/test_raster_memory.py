"""What a large gradient PNG costs the job worker (zip exports allow 8000 px a side, docs/exports.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from control_plane.services.exports import MAX_IMAGE_PIXELS, PNG_BUDGET_MB

ROOT = Path(__file__).resolve().parents[3]
# Each run renders in a fresh interpreter: resident memory is the process's, not pytest's.
RENDER = textwrap.dedent("""
    import gc, resource, sys
    from control_plane.render.design import parse_design
    from control_plane.render.output import render_raster
    design = parse_design({"style_preset": "sunset"})
    render_raster("https://qr.test/menu-table?qr=1", design, 200).close()  # everything imported
    before = int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20
    for px in map(int, sys.argv[1:]):
        render_raster("https://qr.test/menu-table?qr=1", design, px).close()
    gc.collect()
    held = int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, held)
""")


def _megabytes(*sizes: int) -> tuple[int, int, int]:
    """Resident MB before the renders, at the peak, and still held after them."""
    out = subprocess.run([sys.executable, "-c", RENDER, *map(str, sizes)], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60).stdout.split()
    return int(out[0]), int(out[1]), int(out[2])


def test_one_largest_gradient_png_stays_within_the_stated_budget() -> None:
    before, peak, _ = _megabytes(MAX_IMAGE_PIXELS)
    assert peak - before <= PNG_BUDGET_MB, f"{peak - before} MB for one {MAX_IMAGE_PIXELS} px sunset PNG"


def test_gradient_pngs_of_several_sizes_leave_no_memory_behind() -> None:
    """Ramps were cached per pixel size: every distinct size_mm/dpi of a zip pinned another 36 MB at 6000 px."""
    before, _, held = _megabytes(6000, 6001, 6002, 6003)
    assert held - before < 50, f"{held - before} MB still held after 4 renders"
