"""Where tracking broke: the frames of a tracking run worth labeling, each with the reason.

A tracker's mistakes point at the detector's: a cow the detector missed for a while is kept
alive by the Kalman filter with no detection; a cow seen only in patches becomes several short
tracks, or a track that starts or ends in the middle of the picture (cows walk in and out at
the edges, they do not appear from nowhere); with ground truth, an identity switch. Labeling
exactly those frames teaches the detector what it got wrong there.

Works on the run's track table (``tracks.csv``: frame from 1, time_s, id, x1, y1, x2, y2 in
original video pixels, score, detected) and, when the video has ground truth, the identity
switches :func:`cowdetect.mot.id_switches` finds. Frames are reported as indexes from 0 (like
:class:`cowdetect.video.Frame` and imported images), times in seconds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

# What kinds of break there are, most telling first (the order ranks frames when there are more
# candidates than :attr:`BreakConfig.max_frames`).
KINDS = ("id_switch", "missed", "short_track", "born_inside", "lost_inside")


@dataclass(frozen=True)
class BreakConfig:
    """Thresholds. Times are seconds, so they mean the same at any frame rate."""

    short_track_s: float = 1.0   # a track living less than this (not cut by the video's start or end)
    missed_min: int = 3          # detection frames in a row a track coasted through without a detection
    edge_margin: float = 0.05    # "inside the picture": farther than this share of width / height from an edge
    merge_s: float = 0.5         # candidates closer than this are one frame to label (reasons joined)
    max_frames: int = 20


@dataclass(frozen=True)
class FrameToLabel:
    """One frame worth labeling: its index (from 0), time, the most telling kind and every reason."""

    frame: int
    time: float
    kind: str
    reason: str
    track_ids: tuple[int, ...]

    def as_dict(self) -> dict:
        out = asdict(self)
        out["track_ids"] = list(self.track_ids)
        return out


def _inside(row: pd.Series, width: int, height: int, margin: float) -> bool:
    mx, my = margin * width, margin * height
    return bool(row["x1"] > mx and row["y1"] > my and row["x2"] < width - mx and row["y2"] < height - my)


def _missed_runs(track: pd.DataFrame, detect_every: int, minimum: int) -> list[tuple[int, int]]:
    """(first, last) frames (from 1) of each gap of ≥ ``minimum`` detection frames in which no
    detection matched the track, between two that did. The run after a track's last detection
    is not a gap: that is the tracker waiting for a cow that left (or was lost: ``lost_inside``)."""
    on_detection_frames = track[(track["frame"] - 1) % detect_every == 0]
    runs, start, count, last = [], None, 0, None
    for frame, hit in zip(on_detection_frames["frame"], on_detection_frames["detected"]):
        if not hit:
            start, count, last = (frame if start is None else start), count + 1, frame
            continue
        if count >= minimum:
            runs.append((int(start), int(last)))
        start, count = None, 0
    return runs


def _seconds(track: pd.DataFrame, fps: float) -> pd.Series:
    """Each row's time: the frame's own timestamp when the table has it (variable frame rate)."""
    return track["time_s"] if "time_s" in track else (track["frame"] - 1) / fps


def _candidates(tracks: pd.DataFrame, width: int, height: int, fps: float, frames: int, detect_every: int,
                start_slack: int, config: BreakConfig) -> list[tuple[int, str, str, int, float]]:
    """(frame from 1, kind, reason, track id, severity) for every break in ``tracks``."""
    out = []
    for track_id, track in tracks.sort_values("frame").groupby("id"):
        first, last = int(track["frame"].iloc[0]), int(track["frame"].iloc[-1])
        times = _seconds(track, fps)
        for a, b in _missed_runs(track, detect_every, config.missed_min):
            gap = float(times[track["frame"] == b].iloc[0] - times[track["frame"] == a].iloc[0]) + 1 / fps
            out.append(((a + b) // 2, "missed", f"track {track_id} kept alive {gap:.1f} s with no detection "
                        f"matched (the detector missed this cow)", int(track_id), gap))
        detected = track[track["detected"] == 1]
        if detected.empty:
            continue
        # A track shows up only after initialization_delay detections and is kept hit_counter_max
        # frames after its last: one present at the start shows up a few frames in, and its rows
        # run on to the video's end when the video cuts it.
        born_at_start, ends_with_video = first <= 1 + start_slack, last >= frames
        seen = _seconds(detected, fps)
        life = float(seen.iloc[-1] - seen.iloc[0]) + 1 / fps
        if life < config.short_track_s and not (born_at_start or ends_with_video):
            out.append(((int(detected["frame"].iloc[0]) + int(detected["frame"].iloc[-1])) // 2, "short_track",
                        f"track {track_id} lived only {life:.2f} s", int(track_id), config.short_track_s - life))
        if not born_at_start and _inside(detected.iloc[0], width, height, config.edge_margin):
            out.append((int(detected["frame"].iloc[0]), "born_inside", f"track {track_id} appeared in the middle "
                        f"of the picture", int(track_id), 0.0))
        if not ends_with_video and _inside(detected.iloc[-1], width, height, config.edge_margin):
            out.append((int(detected["frame"].iloc[-1]), "lost_inside", f"track {track_id} was lost in the middle "
                        f"of the picture", int(track_id), 0.0))
    return out


def frames_to_label(tracks: pd.DataFrame, width: int, height: int, fps: float, frames: int, detect_every: int = 1,
                    switches: list[tuple[int, int, int, int]] | None = None,
                    config: BreakConfig = BreakConfig(), initialization_delay: int = 0) -> list[FrameToLabel]:
    """The frames where tracking broke, in frame order, at most ``config.max_frames``.

    Args:
        tracks: the run's track table (``tracks.csv``), frames from 1, boxes xyxy in video pixels.
        width, height, fps, frames: the video's size, frame rate and the number of frames tracked.
        detect_every: the run's detection period (frames in between have no detection by design).
        switches: (frame from 1, true id, old track id, new track id) from ground truth, or None.
        initialization_delay: the tracker's (detections before a track gets an id): a track
            whose first row comes this late was there from the start, not born mid-video.
    """
    if not fps > 0 or width <= 0 or height <= 0:
        raise ValueError(f"frames_to_label: expected a positive size and frame rate, got {width}x{height} at {fps}")
    found = [(f, "id_switch", f"identity switch: cow {gt} went from track {old} to track {new}", new, 1.0)
             for f, gt, old, new in switches or []]  # the new track's id: it is the one on the frame
    if not tracks.empty:
        every = max(1, detect_every)
        found += _candidates(tracks, width, height, fps, frames, every, (initialization_delay + 1) * every, config)
    rank = {kind: i for i, kind in enumerate(KINDS)}
    found.sort(key=lambda c: (rank[c[1]], -c[4], c[0]))
    window = max(1, round(config.merge_s * fps))
    chosen: list[list] = []  # [frame, kind, reasons, ids]
    for frame, kind, reason, track_id, _ in found:
        near = next((c for c in chosen if abs(c[0] - frame) < window), None)
        if near is not None:
            if reason not in near[2]:
                near[2].append(reason)
                near[3].append(track_id)
        elif len(chosen) < config.max_frames:
            chosen.append([frame, kind, [reason], [track_id]])
    times = tracks.groupby("frame")["time_s"].first() if "time_s" in tracks and not tracks.empty else pd.Series()
    return [FrameToLabel(f - 1, round(float(times.get(f, (f - 1) / fps)), 3), kind, "; ".join(reasons),
                         tuple(dict.fromkeys(ids)))
            for f, kind, reasons, ids in sorted(chosen, key=lambda c: c[0])]


def tracker_boxes(tracks: pd.DataFrame, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's boxes (xyxy video px, (N, 4)) and scores at frame index ``frame`` (from 0)."""
    rows = tracks[tracks["frame"] == frame + 1]
    return rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float32).reshape(-1, 4), rows["score"].to_numpy(np.float32)
