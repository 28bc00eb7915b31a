"""Counting lines and zones on tracks: how many cows crossed a gate, each way, and how long each
stayed in a pen.

A :class:`Line` (two points) and a :class:`Zone` (a polygon) are in full-frame pixel coordinates
(:mod:`cowdetect.geometry`: reading, checking, JSON; re-exported here).
:class:`Counter` is a :class:`~cowdetect.tracking.FrameHook`: :func:`~cowdetect.tracking.track_video`
hands it every frame's tracks (xyxy pixels) and it keeps rolling counts, its :meth:`Counter.summary`
callable at any moment (a live stream asks it while the stream runs) and draws the lines, zones and
counts on the annotated video.

**Anchor.** A track is where its box's bottom centre is: a cow's feet on the ground. The box centre
would cross a gate drawn on the ground before the cow does (by half its height, more for a near
cow), and a zone drawn on the ground would see a cow standing at its far edge as outside.

**Direction.** Looking from (x1, y1) towards (x2, y2) on the screen, *forward* is a crossing from
the left-hand side of the line to its right-hand side; the annotated video draws an arrow from
the line's middle pointing the forward way. (Image y grows downwards: a line drawn left to right
counts cows walking down the picture as forward.)

**Hysteresis.** A detector's box jitters by a few pixels from frame to frame, so a cow standing on
a line would cross it back and forth many times. A track's side of a line changes only once its
anchor is at least ``hysteresis`` × its box's diagonal beyond the line (a band on each side;
default 0.1, a tenth of a cow's size at any distance and resolution); in the band it keeps the
side it had. A cow must really walk over, and one that jitters on the line counts once, or not at
all if it turns back. A track first seen inside the band has no side until it leaves the band.
A line is a segment: a crossing counts when the anchor's path (from its last point on the old side
to its first point beyond the band) meets the line between its two ends. Zones use the same band:
a track enters once its anchor is the band's width inside the polygon, leaves once it is that far
outside; a track first seen is inside when its anchor is inside at all.

A crossing is stamped with the frame (and time) of the first sample past the line, not the one
where the anchor leaves the band: a slow or large cow leaves the band several frames after it
crossed. If the anchor comes back to its side before leaving the band, that stamp is forgotten.

**Dwell.** Each frame lasts until the next one's timestamp (variable frame rate is honoured); the
last frame seen lasts as long as the one before it. A track's dwell in a zone is the sum of the
frames it was inside: N frames at 25 fps are N / 25 s. One frame is credited at most
max(1 s, 2 × the median of the last 25 frame intervals): a stream outage (a 60 s gap before a
reconnect) is not time anyone was seen inside.

**Memory.** Totals are running counts (forward / backward per line; inside, most inside and each
track's dwell per zone); the events themselves are kept all by default (a video file's run lists
every crossing) or only the last ``keep`` of each line and zone (an endless stream), with
``csv_path`` appending every event to a CSV as it happens (nothing to rewrite).
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Container, Iterable, Sequence

import cv2
import numpy as np

# Re-exported: the shapes counted on used to live here (live.py, the CLI and pages import them from here).
from .geometry import (MAX_CORNERS, MAX_SHAPES, NAME_PATTERN, Line, Zone, check_geometry,  # noqa: F401
                       geometry_from_dict, geometry_to_dict, named, parse_line, parse_zone)

if TYPE_CHECKING:
    import pandas as pd

    from .tracking import Tracks
    from .video import Frame

EVENT_COLUMNS = ("kind", "name", "event", "track_id", "frame", "time_s")
FORGET_FRAMES = 1000  # a track unseen this many frames loses its side of each line
# Dwell credited for one frame, at most: the larger of MAX_FRAME_S and GAP_FACTOR × the median of the
# last INTERVALS frame intervals. The median follows the stream's real rate (a 1 fps camera still gets
# its full second), GAP_FACTOR lets ordinary jitter and a dropped frame or two through, and 1 s keeps a
# short burst of dropped frames (a busy CPU) credited; a reconnect after a long outage credits at most that.
MAX_FRAME_S = 1.0
GAP_FACTOR = 2.0
INTERVALS = 25


@dataclass(frozen=True)
class Event:
    """One counted event: a line crossed (``event`` forward / backward) or a zone entered / left
    (enter / exit; a track that vanishes inside exits). ``frame`` from 1, as in tracks.csv."""

    kind: str
    name: str
    event: str
    track_id: int
    frame: int
    time_s: float


def anchors(xyxy: np.ndarray) -> np.ndarray:
    """(N, 2) bottom centres of (N, 4) xyxy pixel boxes: where a cow stands."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)


class _LineCount:
    """One line's state: each track's confirmed side (+1 right, -1 left), its last point on that side,
    when it first went past the line (not yet beyond the band), running totals and the kept crossings."""

    def __init__(self, line: Line, keep: int | None) -> None:
        self.line = line
        self.a = np.array([line.x1, line.y1], np.float64)
        self.d = np.array([line.x2 - line.x1, line.y2 - line.y1], np.float64)
        self.length = float(np.hypot(*self.d))
        self.side: dict[int, int] = {}
        self.last: dict[int, np.ndarray] = {}
        self.past: dict[int, tuple[int, float]] = {}
        self.forward = self.backward = 0
        self.crossings: deque[Event] = deque(maxlen=keep)

    def update(self, ids: Iterable[int], points: np.ndarray, bands: np.ndarray, frame: int,
               time_s: float) -> list[Event]:
        """The crossings completed in this frame (``frame`` from 1), stamped when each went past."""
        found = []
        for track_id, p, band in zip(ids, points, bands):
            # signed distance: > 0 on the right-hand side looking along the line (image y down)
            signed = float(self.d[0] * (p[1] - self.a[1]) - self.d[1] * (p[0] - self.a[0])) / self.length
            old = self.side.get(track_id, 0)
            now = 1 if signed >= band else -1 if signed <= -band else 0
            if old and signed * old > 0:
                self.last[track_id] = p  # still on its side (in the band or beyond): the path starts here
                self.past.pop(track_id, None)  # went back: a later crossing is stamped anew
            elif old and signed * old < 0 and track_id not in self.past:
                self.past[track_id] = (frame, time_s)  # the first sample past the line: when it crossed
            if now == 0 or now == old:
                continue
            self.side[track_id] = now
            when = self.past.pop(track_id, (frame, time_s))
            if old and self._within(self.last.get(track_id, p), p):
                event = Event("line", self.line.name, "forward" if now > 0 else "backward", int(track_id),
                              when[0], round(when[1], 4))
                self.forward += now > 0
                self.backward += now < 0
                self.crossings.append(event)
                found.append(event)
            self.last[track_id] = p
        return found

    def _within(self, p: np.ndarray, q: np.ndarray) -> bool:
        """Whether the path p → q meets the line between its ends (not its extension)."""
        sp = self.d[0] * (p[1] - self.a[1]) - self.d[1] * (p[0] - self.a[0])
        sq = self.d[0] * (q[1] - self.a[1]) - self.d[1] * (q[0] - self.a[0])
        point = q if sp == sq else p + (q - p) * (sp / (sp - sq))
        along = float(np.dot(point - self.a, self.d)) / self.length ** 2
        return 0.0 <= along <= 1.0

    def forget(self, gone: Iterable[int]) -> None:
        for track_id in gone:
            self.side.pop(track_id, None)
            self.last.pop(track_id, None)
            self.past.pop(track_id, None)


class _ZoneCount:
    """One zone's state: the tracks inside (with hysteresis), each track's dwell, the most inside at
    once and the kept enter / exit events."""

    def __init__(self, zone: Zone, keep: int | None) -> None:
        self.zone = zone
        self.contour = np.asarray(zone.points, np.float32).reshape(-1, 1, 2)
        self.inside: set[int] = set()
        self.dwell: dict[int, float] = {}
        self.max_inside = 0
        self.events: deque[Event] = deque(maxlen=keep)

    def update(self, ids: Sequence[int], points: np.ndarray, bands: np.ndarray, frame: int, time_s: float,
               seen: Container[int]) -> list[Event]:
        """The enters and exits of this frame. ``seen``: the ids tracked before this frame (a new track
        is inside when its anchor is at all)."""
        now: set[int] = set()
        for track_id, p, band in zip(ids, points, bands):
            # signed distance to the polygon's edges, > 0 inside (OpenCV's point-in-polygon test)
            dist = cv2.pointPolygonTest(self.contour, (float(p[0]), float(p[1])), True)
            was = track_id in self.inside
            if (was and dist > -band) or (not was and (dist >= band or (track_id not in seen and dist >= 0))):
                now.add(track_id)
        found = [Event("zone", self.zone.name, "enter", t, frame, round(time_s, 4)) for t in sorted(now - self.inside)]
        found += [Event("zone", self.zone.name, "exit", t, frame, round(time_s, 4))  # left, or no longer tracked
                  for t in sorted(self.inside - now)]
        self.events.extend(found)
        self.inside = now
        self.max_inside = max(self.max_inside, len(now))
        return found

    def credit(self, seconds: float) -> None:
        """The tracks inside stayed ``seconds`` more (the time from their frame to the next)."""
        for track_id in self.inside:
            self.dwell[track_id] = self.dwell.get(track_id, 0.0) + seconds


class Counter:
    """Counts line crossings (each way) and zone occupancy over tracks, frame by frame; a
    :class:`~cowdetect.tracking.FrameHook` for :func:`~cowdetect.tracking.track_video`.

    ``lines`` and ``zones`` are named (:func:`named`) and in full-frame pixels; ``hysteresis`` is
    the band's half-width in units of each track's box diagonal (see the module's docstring).
    ``keep``: how many recent events of each line and zone stay in memory (None: all; an endless
    stream gives a bound — the totals are running counts either way). ``csv_path``: every event is
    appended there as it happens (header first when the file is new), flushed each frame.
    Frame times come from ``Frame.time`` (seconds).
    """

    def __init__(self, lines: Sequence[Line] = (), zones: Sequence[Zone] = (), hysteresis: float = 0.1,
                 keep: int | None = None, csv_path: str | Path | None = None) -> None:
        if not (math.isfinite(hysteresis) and hysteresis >= 0):
            raise ValueError(f"hysteresis: expected 0 or a positive number, got {hysteresis}")
        if keep is not None and keep < 1:
            raise ValueError(f"keep: expected None or at least 1 event, got {keep}")
        self.lines, self.zones, self.hysteresis = tuple(lines), tuple(zones), hysteresis
        self._lines = [_LineCount(line, keep) for line in self.lines]
        self._zones = [_ZoneCount(zone, keep) for zone in self.zones]
        self._csv_path = Path(csv_path) if csv_path is not None else None
        if self._csv_path is not None:
            self._append([])  # the header now: a run with no crossing still leaves its (empty) table
        self._last_seen: dict[int, int] = {}
        self._last_time: float | None = None
        self._intervals: deque[float] = deque(maxlen=INTERVALS)
        self._last_dt = 0.0
        self.frames = 0

    def _credit(self, time_s: float) -> None:
        """Credit the tracks inside each zone with the time since the last frame, capped (module docstring)."""
        if self._last_time is None:
            return
        dt = max(0.0, time_s - self._last_time)
        cap = max(MAX_FRAME_S, GAP_FACTOR * statistics.median(self._intervals)) if self._intervals else MAX_FRAME_S
        self._intervals.append(dt)
        self._last_dt = min(dt, cap)
        for zone in self._zones:
            zone.credit(self._last_dt)

    def update(self, frame: Frame, tracks: Tracks) -> None:
        """Advance one frame: ``frame`` (its index from 0 and time), ``tracks`` (ids, xyxy px)."""
        self._credit(frame.time)
        self._last_time = frame.time
        ids = [int(i) for i in tracks.ids]
        xyxy = np.asarray(tracks.xyxy, np.float64).reshape(-1, 4)
        points = anchors(xyxy)
        bands = self.hysteresis * np.hypot(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
        number = frame.index + 1
        found = [e for line in self._lines for e in line.update(ids, points, bands, number, frame.time)]
        found += [e for zone in self._zones for e in zone.update(ids, points, bands, number, frame.time,
                                                                 self._last_seen)]
        if found and self._csv_path is not None:
            self._append(sorted(found, key=_order))
        self._last_seen.update((i, self.frames) for i in ids)
        # A lost track's side is kept a while (a re-identified cow keeps its id and its side), then
        # forgotten: memory stays bounded on an endless stream.
        stale = [i for i, n in self._last_seen.items() if self.frames - n > FORGET_FRAMES]
        for track_id in stale:
            del self._last_seen[track_id]
        for line in self._lines:
            line.forget(stale)
        self.frames += 1

    def _append(self, events: list[Event]) -> None:
        assert self._csv_path is not None
        new = not self._csv_path.is_file() or self._csv_path.stat().st_size == 0
        with self._csv_path.open("a", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            if new:
                writer.writerow(EVENT_COLUMNS)
            writer.writerows(_row(e) for e in events)

    def events(self) -> list[Event]:
        """The kept events (all, unless ``keep`` bounds them): crossings, zone enters and exits, in frame order."""
        found = [e for line in self._lines for e in line.crossings] + [e for z in self._zones for e in z.events]
        return sorted(found, key=_order)

    def summary(self) -> dict[str, Any]:
        """The counts so far, JSON-ready: {"lines": [{name, points, forward, backward, crossings: [{track_id,
        direction, frame, time_s}]}], "zones": [{name, points, inside (now), max_inside, dwell: [{track_id,
        seconds}]}]}. forward / backward are totals; crossings the kept ones (all unless ``keep``). Frames
        from 1; a track inside at the last frame is credited with that frame's time."""
        lines = [{"name": count.line.name, "points": [list(p) for p in count.line.points],
                  "forward": count.forward, "backward": count.backward,
                  "crossings": [{"track_id": e.track_id, "direction": e.event, "frame": e.frame, "time_s": e.time_s}
                                for e in count.crossings]} for count in self._lines]
        zones = []
        for count in self._zones:
            dwell = dict(count.dwell)
            for track_id in count.inside:
                dwell[track_id] = dwell.get(track_id, 0.0) + self._last_dt
            zones.append({"name": count.zone.name, "points": [list(p) for p in count.zone.points],
                          "inside": len(count.inside), "max_inside": count.max_inside,
                          "dwell": [{"track_id": t, "seconds": round(s, 3)} for t, s in sorted(dwell.items())]})
        return {"lines": lines, "zones": zones}

    def csv_text(self) -> str:
        """The kept events as CSV: kind (line / zone), name, event (forward / backward / enter / exit),
        track_id, frame (from 1), time_s."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EVENT_COLUMNS)
        writer.writerows(_row(e) for e in self.events())
        return out.getvalue()

    def write_csv(self, path: str | Path) -> Path:
        """Write :meth:`csv_text` to ``path`` atomically (a reader never sees half a file)."""
        from .files import atomic_write_bytes

        return atomic_write_bytes(path, self.csv_text().encode())

    def draw(self, rgb: np.ndarray, scale: float) -> None:
        """Draw the zones, the lines with their forward arrows and the running counts in place on
        ``rgb`` (RGB uint8, ``scale`` × the full-size frame)."""
        from .draw import draw_counts  # draw.py brings torch; counting itself needs only numpy and OpenCV

        draw_counts(rgb, [(c.line, c.forward, c.backward) for c in self._lines],
                    [(c.zone, len(c.inside)) for c in self._zones], scale)


def _order(e: Event) -> tuple[int, str, str, int]:
    return e.frame, e.kind, e.name, e.track_id


def _row(e: Event) -> tuple[Any, ...]:
    return e.kind, e.name, e.event, e.track_id, e.frame, f"{e.time_s:.4f}"


def replay(counter: Counter, tracks: pd.DataFrame, fps: float, frames: int | None = None) -> Counter:
    """Run ``counter`` over a MOTChallenge table (:func:`cowdetect.mot.read_mot`: frame from 1, id,
    x, y, w, h pixels) as if tracked at ``fps``: the counts of ground truth, or of a finished run's
    tracks without tracking again. Every frame up to ``frames`` (default the table's last) is fed,
    empty ones too. Returns ``counter``."""
    from .tracking import Tracks
    from .video import Frame

    empty = np.zeros((0, 0, 3), np.uint8)
    last = int(frames if frames is not None else (tracks["frame"].max() if len(tracks) else 0))
    groups = {int(k): g for k, g in tracks.groupby("frame")} if len(tracks) else {}
    for number in range(1, last + 1):
        g = groups.get(number)
        if g is None:
            xyxy, ids = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        else:
            xyxy = np.stack([g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"]], 1).astype(np.float32)
            ids = g["id"].to_numpy(np.int64)
        counter.update(Frame(number - 1, (number - 1) / fps, empty),
                       Tracks(ids, xyxy, np.ones(len(ids), np.float32), np.ones(len(ids), bool)))
    return counter
