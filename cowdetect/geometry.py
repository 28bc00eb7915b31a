"""Counting lines and zones as shapes: :class:`Line` (two points) and :class:`Zone` (a polygon) in
full-frame pixel coordinates; reading them from text ('NAME=x1,y1,x2,y2'), checking them (against a
frame, names, simple polygons) and their JSON form (kept with a video, in run params).

What is counted on them (crossings, occupancy, dwell) is :mod:`cowdetect.counting`. Only numpy and
OpenCV here: the store checks geometry without the tracking stack.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}$")
# Bounds on what a user may draw or send: the simple-polygon check is O(corners²) and counting is
# O(tracks × shapes) per frame, so a 10⁴-corner zone or 10⁶ zones would hang a request or a run.
MAX_CORNERS = 200
MAX_SHAPES = 100


@dataclass(frozen=True)
class Line:
    """A counting line from (x1, y1) to (x2, y2), full-frame pixels. Forward: from its left-hand
    side to its right-hand side, looking from (x1, y1) towards (x2, y2)."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def points(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (self.x1, self.y1), (self.x2, self.y2)


@dataclass(frozen=True)
class Zone:
    """A counting zone: a polygon's corners in order, full-frame pixels."""

    name: str
    points: tuple[tuple[float, float], ...]


# -- reading and checking ---------------------------------------------------------------------

def _split_name(text: str, what: str) -> tuple[str, str]:
    """('gate', '1,2,3,4') from 'gate=1,2,3,4'; ('', text) without a name."""
    if "=" not in text:
        return "", text
    name, _, rest = text.partition("=")
    name = name.strip()
    if not NAME_PATTERN.match(name):
        raise ValueError(f"{what} {text!r}: expected a name of up to 40 letters, digits, spaces, '_', '.' or '-' "
                         f"before '=', got {name!r}")
    return name, rest


def _numbers(text: str, what: str, original: str) -> list[float]:
    """The finite numbers of 'x,y,x,y'; ValueError naming the first that is not one."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{what} {original!r}: expected comma-separated numbers, got {part.strip()!r}")
        values.append(value)
    return values


def parse_line(text: str) -> Line:
    """A :class:`Line` from 'x1,y1,x2,y2' or 'NAME=x1,y1,x2,y2' (pixels). Unnamed: name ''
    (see :func:`named`). Not checked against a frame: :func:`check_geometry` does that.

    Raises:
        ValueError: not four finite numbers, a bad name, or both ends the same point.
    """
    name, rest = _split_name(text, "line")
    values = _numbers(rest, "line", text)
    if len(values) != 4:
        raise ValueError(f"line {text!r}: expected 4 numbers x1,y1,x2,y2, got {len(values)}")
    line = Line(name, *values)
    _check_line(line)
    return line


def parse_zone(text: str) -> Zone:
    """A :class:`Zone` from 'x1,y1,x2,y2,x3,y3,...' or 'NAME=x1,y1,...' (pixels, corners in order).

    Raises:
        ValueError: not finite numbers, an odd count, fewer than 3 corners, a bad name, edges that
            cross or no area.
    """
    name, rest = _split_name(text, "zone")
    values = _numbers(rest, "zone", text)
    if len(values) % 2:
        raise ValueError(f"zone {text!r}: expected x,y pairs, got {len(values)} numbers (an odd count)")
    zone = Zone(name, tuple(zip(values[0::2], values[1::2])))
    _check_zone(zone)
    return zone


def _label(kind: str, name: str) -> str:
    return f"{kind} {name!r}" if name else kind


def _check_line(line: Line) -> None:
    if (line.x1, line.y1) == (line.x2, line.y2):
        raise ValueError(f"{_label('line', line.name)}: both ends are the same point ({line.x1:g}, {line.y1:g}); "
                         f"a counting line needs two different points")


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _segments_meet(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    """Whether segments p1p2 and q1q2 share a point (touching and overlapping included)."""
    d1, d2, d3, d4 = _cross(q1, q2, p1), _cross(q1, q2, p2), _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0) and ((d3 > 0) != (d4 > 0) and d3 != 0 and d4 != 0):
        return True

    def on(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: float) -> bool:  # c collinear with ab, within it
        return d == 0 and min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def _check_zone(zone: Zone) -> None:
    """Refuse fewer than 3 corners, crossing edges and a polygon without area.

    Written out (a textbook orientation test of every pair of edges that are not neighbours): OpenCV
    has no simple-polygon test, and a geometry library (shapely) for one O(n²) check of a few dozen
    edges is not worth a new dependency."""
    what = _label("zone", zone.name)
    if not 3 <= len(zone.points) <= MAX_CORNERS:
        bound = "at least 3" if len(zone.points) < 3 else f"at most {MAX_CORNERS}"
        raise ValueError(f"{what}: expected {bound} corners (x,y pairs), got {len(zone.points)}")
    pts = np.asarray(zone.points, np.float64)
    n = len(pts)
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours share a corner; checked below
                continue
            if _segments_meet(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                raise ValueError(f"{what}: its edges cross (edge {i + 1} and edge {j + 1}); give the corners "
                                 f"in order around the zone")
    if abs(cv2.contourArea(pts.astype(np.float32).reshape(-1, 1, 2))) < 1.0:
        raise ValueError(f"{what}: its corners enclose no area (all on one line, or repeated)")


def _check_count(count: int) -> None:
    if count > MAX_SHAPES:
        raise ValueError(f"geometry: expected at most {MAX_SHAPES} lines and zones together, got {count}")


def named(lines: Sequence[Line], zones: Sequence[Zone]) -> tuple[tuple[Line, ...], tuple[Zone, ...]]:
    """The lines and zones with unnamed ones called 'line1', 'line2', ... and 'zone1', ... (by position)."""
    return (tuple(line if line.name else Line(f"line{i}", line.x1, line.y1, line.x2, line.y2)
                  for i, line in enumerate(lines, 1)),
            tuple(zone if zone.name else Zone(f"zone{i}", zone.points) for i, zone in enumerate(zones, 1)))


def check_geometry(lines: Sequence[Line], zones: Sequence[Zone], width: int | None, height: int | None) -> None:
    """Check named lines and zones against a ``width`` × ``height`` frame: every point inside it
    (edges included; with the size unknown — None — only that no coordinate is negative), each line
    two distinct points, each zone a simple polygon with area, names given and not used twice.

    Raises:
        ValueError: one line, naming the line or zone and what is wrong.
    """
    _check_count(len(lines) + len(zones))
    seen: set[str] = set()
    for kind, shape in [("line", s) for s in lines] + [("zone", s) for s in zones]:
        if not shape.name or not NAME_PATTERN.match(shape.name):
            raise ValueError(f"{kind} name: expected up to 40 letters, digits, spaces, '_', '.' or '-', "
                             f"got {shape.name!r}")
        if shape.name in seen:
            raise ValueError(f"{kind} {shape.name!r}: the name is used twice; every line and zone needs its own")
        seen.add(shape.name)
        points = shape.points
        for x, y in points:
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"{kind} {shape.name!r}: expected finite numbers, got ({x}, {y})")
            if x < 0 or y < 0 or (width and x > width) or (height and y > height):
                frame = f"the {width}x{height} frame" if width and height else "the frame (coordinates start at 0)"
                raise ValueError(f"{kind} {shape.name!r}: point ({x:g}, {y:g}) is outside {frame}")
        _check_line(shape) if kind == "line" else _check_zone(shape)


def geometry_to_dict(lines: Sequence[Line], zones: Sequence[Zone]) -> dict[str, Any]:
    """JSON-ready: {"lines": [{"name", "points": [[x1, y1], [x2, y2]]}], "zones": [{"name", "points"}]}."""
    return {"lines": [{"name": line.name, "points": [list(p) for p in line.points]} for line in lines],
            "zones": [{"name": zone.name, "points": [list(p) for p in zone.points]} for zone in zones]}


def _points_of(item: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(item, dict) or set(item) != {"name", "points"} or not isinstance(item["name"], str):
        raise ValueError(f"{where}: expected {{'name': text, 'points': [[x, y], ...]}}, got {str(item)[:80]}")
    points = item["points"]
    ok = isinstance(points, list) and all(
        isinstance(p, list) and len(p) == 2 and all(type(v) in (int, float) and math.isfinite(v) for v in p)
        for p in points)
    if not ok:
        raise ValueError(f"{where} {item['name']!r}: expected points as [[x, y], ...] of finite numbers, "
                         f"got {str(points)[:80]}")
    return [(float(x), float(y)) for x, y in points]


def geometry_from_dict(d: Any) -> tuple[tuple[Line, ...], tuple[Zone, ...]]:
    """The lines and zones of a :func:`geometry_to_dict` dict, types checked strictly (each line two
    points, each zone a simple polygon; not checked against a frame).

    Raises:
        ValueError: any other shape or value.
    """
    if not isinstance(d, dict) or not set(d) <= {"lines", "zones"} or \
            not all(isinstance(d.get(k, []), list) for k in ("lines", "zones")):
        raise ValueError(f"geometry: expected {{'lines': [...], 'zones': [...]}}, got {str(d)[:80]}")
    _check_count(len(d.get("lines", [])) + len(d.get("zones", [])))
    lines, zones = [], []
    for item in d.get("lines", []):
        points = _points_of(item, "line")
        if len(points) != 2:
            raise ValueError(f"line {item['name']!r}: expected 2 points, got {len(points)}")
        lines.append(Line(item["name"], *points[0], *points[1]))
        _check_line(lines[-1])
    for item in d.get("zones", []):
        points = _points_of(item, "zone")  # first: it checks that the item has a name
        zones.append(Zone(item["name"], tuple(points)))
        _check_zone(zones[-1])
    return tuple(lines), tuple(zones)


def with_shape(lines: Sequence[Line], zones: Sequence[Zone], kind: str, points: Sequence[tuple[float, float]],
               name: str = "") -> tuple[tuple[Line, ...], tuple[Zone, ...]]:
    """``lines`` and ``zones`` with one more: a line (``kind`` "line", two points) or a zone ("zone",
    corners), full-frame pixels. ``name`` '' picks the first free "line1", "line2", ... ("zone1", ...).

    Raises:
        ValueError: another kind, a line without exactly two points, or a bad shape (the name is
            checked with the rest by :func:`check_geometry`).
    """
    if kind not in ("line", "zone"):
        raise ValueError(f"kind: expected 'line' or 'zone', got {kind!r}")
    taken = {shape.name for shape in (*lines, *zones)}
    name = name.strip() or next(f"{kind}{i}" for i in range(1, len(taken) + 2) if f"{kind}{i}" not in taken)
    if kind == "zone":
        zone = Zone(name, tuple((float(x), float(y)) for x, y in points))
        _check_zone(zone)
        return tuple(lines), (*zones, zone)
    if len(points) != 2:
        raise ValueError(f"line {name!r}: expected 2 points, got {len(points)}")
    line = Line(name, *map(float, points[0]), *map(float, points[1]))
    _check_line(line)
    return (*lines, line), tuple(zones)
