"""Matrix + design → shapes in module units: the one geometry that SVG and raster output both draw."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from control_plane.render.design import Design
from control_plane.render.matrix import Matrix, is_finder

DOT_RADIUS = 0.45  # a little under half a module: dots stay separate, yet dark enough to read
CORNER_RADIUS = 0.5  # rounded/classy: an isolated module becomes a circle, a run a pill


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    radius: float = 0.0
    corners: tuple[bool, bool, bool, bool] = (True, True, True, True)  # top-left, top-right, bottom-right, bottom-left


@dataclass(frozen=True, slots=True)
class Circle:
    cx: float
    cy: float
    r: float


Shape = Rect | Circle


@dataclass(frozen=True, slots=True)
class Solid:
    color: str


@dataclass(frozen=True, slots=True)
class LinearGradient:
    start: str
    end: str
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class RadialGradient:
    start: str
    end: str
    cx: float
    cy: float
    r: float


Fill = Solid | LinearGradient | RadialGradient


@dataclass(frozen=True, slots=True)
class Layer:
    """Shapes painted with one fill; `holes` are cut out of them (even-odd)."""

    shapes: tuple[Shape, ...]
    fill: Fill
    holes: tuple[Shape, ...] = ()


@dataclass(frozen=True, slots=True)
class LogoBox:
    x: float
    y: float
    side: float


@dataclass(frozen=True, slots=True)
class Geometry:
    width: int  # modules, quiet zone included
    background: str | None  # None: transparent
    layers: tuple[Layer, ...]
    logo: LogoBox | None


def build_geometry(matrix: Matrix, design: Design) -> Geometry:
    margin = design.margin
    width = matrix.width + 2 * margin
    body_fill = _fill(design, width)
    logo = _logo_box(matrix, design)
    cleared = _cleared(logo, margin) if logo is not None and design.logo and design.logo.clear_background else None
    body = _body_shapes(matrix, design.shapes.body, margin, cleared)
    frames, holes, balls = _eyes(matrix, design, margin)
    frame_fill: Fill = Solid(design.eye_colors.frame) if design.eye_colors else body_fill
    ball_fill: Fill = Solid(design.eye_colors.ball) if design.eye_colors else body_fill
    layers = (Layer(body, body_fill), Layer(frames, frame_fill, holes), Layer(balls, ball_fill))
    background = None if design.transparent_background else design.colors.background
    return Geometry(width, background, layers, logo)


def _fill(design: Design, width: int) -> Fill:
    gradient = design.gradient
    if gradient is None:
        return Solid(design.colors.foreground)
    if gradient.type == "radial":
        # Reaches the corners, not the edges: the whole symbol shades from start to end.
        return RadialGradient(gradient.start, gradient.end, width / 2, width / 2, width / 2 * math.sqrt(2))
    x2, y2 = {"linear-top-to-bottom": (0, width), "linear-left-to-right": (width, 0),
              "linear-diagonal": (width, width)}[gradient.type]
    return LinearGradient(gradient.start, gradient.end, 0, 0, x2, y2)


def _logo_box(matrix: Matrix, design: Design) -> LogoBox | None:
    if design.logo is None:
        return None
    side = matrix.width * design.logo.scale
    corner = design.margin + (matrix.width - side) / 2
    return LogoBox(corner, corner, side)


def _cleared(logo: LogoBox, margin: int) -> tuple[int, int, int, int]:
    """Module cells (x0, y0, x1, y1 exclusive, symbol coordinates) under the logo, rounded outwards."""
    low = math.floor(logo.x - margin)
    high = math.ceil(logo.x + logo.side - margin)
    return low, low, high, high


def _body_shapes(matrix: Matrix, shape: str, margin: int,
                 cleared: tuple[int, int, int, int] | None) -> tuple[Shape, ...]:
    def dark(x: int, y: int) -> bool:
        if not (0 <= x < matrix.width and 0 <= y < matrix.width) or is_finder(matrix, x, y):
            return False
        if cleared and cleared[0] <= x < cleared[2] and cleared[1] <= y < cleared[3]:
            return False
        return matrix.dark[y][x]

    if shape == "square":
        return tuple(_runs(matrix.width, dark, margin))
    shapes: list[Shape] = []
    for y in range(matrix.width):
        for x in range(matrix.width):
            if not dark(x, y):
                continue
            if shape == "dots":
                shapes.append(Circle(x + margin + 0.5, y + margin + 0.5, DOT_RADIUS))
                continue
            up, down, left, right = dark(x, y - 1), dark(x, y + 1), dark(x - 1, y), dark(x + 1, y)
            # A corner is rounded when neither neighbour beside it is dark, so runs stay joined.
            corners = (not (up or left), not (up or right), not (down or right), not (down or left))
            if shape == "classy":  # leaf-like: only the top-left and bottom-right corners round
                corners = (corners[0], False, corners[2], False)
            shapes.append(Rect(x + margin, y + margin, 1, 1, CORNER_RADIUS if any(corners) else 0, corners))
    return tuple(shapes)


def _runs(width: int, dark: Callable[[int, int], bool], margin: int) -> list[Shape]:
    """Square modules merged into horizontal runs: far fewer shapes to write and draw."""
    runs: list[Shape] = []
    for y in range(width):
        x = 0
        while x < width:
            if not dark(x, y):
                x += 1
                continue
            start = x
            while x < width and dark(x, y):
                x += 1
            runs.append(Rect(start + margin, y + margin, x - start, 1))
    return runs


_EYE_FRAME = {"square": (0.0, 0.0), "rounded": (2.0, 1.2)}  # outer and inner corner radius, in modules
_EYE_BALL = {"square": 0.0, "rounded": 0.9}
# A sharp 3×3 ball's corners come within 0.38 module of a circular frame's hole (r 2.5): along the diagonal
# the finder's 1:1:3:1:1 light/dark runs break, and zxing-cpp misses the eye at many sizes. Half-module
# corners leave 0.59 module of light there.
_BALL_IN_CIRCLE_RADIUS = 0.5


def _eyes(matrix: Matrix, design: Design, margin: int) -> tuple[tuple[Shape, ...], tuple[Shape, ...],
                                                                    tuple[Shape, ...]]:
    far = matrix.width - 7
    frames: list[Shape] = []
    holes: list[Shape] = []
    balls: list[Shape] = []
    for ex, ey in ((0, 0), (far, 0), (0, far)):
        x, y = ex + margin, ey + margin
        if design.shapes.eye_frame == "circle":
            frames.append(Circle(x + 3.5, y + 3.5, 3.5))
            holes.append(Circle(x + 3.5, y + 3.5, 2.5))
        else:
            outer, inner = _EYE_FRAME[design.shapes.eye_frame]
            frames.append(Rect(x, y, 7, 7, outer))
            holes.append(Rect(x + 1, y + 1, 5, 5, inner))
        if design.shapes.eye_ball == "circle":
            balls.append(Circle(x + 3.5, y + 3.5, 1.5))
        elif design.shapes.eye_frame == "circle" and design.shapes.eye_ball == "square":
            balls.append(Rect(x + 2, y + 2, 3, 3, _BALL_IN_CIRCLE_RADIUS))
        else:
            balls.append(Rect(x + 2, y + 2, 3, 3, _EYE_BALL[design.shapes.eye_ball]))
    return tuple(frames), tuple(holes), tuple(balls)
