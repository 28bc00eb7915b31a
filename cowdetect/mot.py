"""Track files and tracking accuracy: MOTChallenge text, track tables, MOTA / IDF1 (motmetrics).

A MOTChallenge line is ``frame,id,x,y,w,h,conf,...`` with frames counted from 1 and boxes as
top-left corner plus size in pixels. Ground truth lines carry ``conf`` 1 (0 = ignore) and a
visibility in the 9th column; tracker output lines end in ``-1,-1,-1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MOT_COLUMNS = ["frame", "id", "x", "y", "w", "h", "conf", "c8", "c9", "c10"]


def mot_line(frame_index: int, track_id: int, xyxy: np.ndarray, score: float) -> str:
    """One tracker-output line for frame ``frame_index`` (from 0) and an xyxy pixel box."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return f"{frame_index + 1},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},-1,-1,-1\n"


def read_mot(path: str | Path) -> pd.DataFrame:
    """Read a MOTChallenge text file into frame, id, x, y, w, h, conf (+ extra columns).

    Raises:
        ValueError: the file is missing, not comma-separated numbers, or has fewer than 6 columns.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"MOT file {path}: no such file")
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=MOT_COLUMNS[:7])
    try:
        df = pd.read_csv(path, header=None, comment="#", skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"MOT file {path.name}: not MOTChallenge text ({exc})") from None
    if df.shape[1] < 6 or not all(pd.api.types.is_numeric_dtype(t) for t in df.dtypes):
        raise ValueError(f"MOT file {path.name}: expected comma-separated numbers "
                         f"frame,id,x,y,w,h[,conf,...], got {df.shape[1]} columns")
    df.columns = MOT_COLUMNS[:df.shape[1]] + [f"c{i}" for i in range(len(MOT_COLUMNS), df.shape[1])]
    if "conf" not in df:
        df["conf"] = 1.0
    return df.astype({"frame": int, "id": int})


def track_table(tracks: pd.DataFrame, fps: float) -> pd.DataFrame:
    """One row per track id: first and last frame (from 1), frames seen, duration in seconds, mean score."""
    if tracks.empty:
        return pd.DataFrame(columns=["id", "first_frame", "last_frame", "frames", "duration_s", "mean_score"])
    grouped = tracks.groupby("id")
    table = pd.DataFrame({"first_frame": grouped["frame"].min(), "last_frame": grouped["frame"].max(),
                          "frames": grouped["frame"].count(), "mean_score": grouped["conf"].mean().round(3)})
    table["duration_s"] = ((table["last_frame"] - table["first_frame"] + 1) / (fps or 25.0)).round(2)
    return table.reset_index()[["id", "first_frame", "last_frame", "frames", "duration_s", "mean_score"]]


def counts_per_frame(tracks: pd.DataFrame, num_frames: int) -> pd.DataFrame:
    """Cows tracked in each frame (frame from 1 to ``num_frames``, zeros included)."""
    counts = tracks.groupby("frame")["id"].nunique() if not tracks.empty else pd.Series(dtype=int)
    index = pd.RangeIndex(1, max(num_frames, int(counts.index.max()) if len(counts) else 0) + 1, name="frame")
    return counts.reindex(index, fill_value=0).rename("cows").reset_index()


def _accumulate(ground_truth: pd.DataFrame, tracks: pd.DataFrame, iou_threshold: float,
                num_frames: int | None) -> Any:
    """A motmetrics accumulator matching ``tracks`` to ``ground_truth`` frame by frame (IoU)."""
    import motmetrics

    gt = ground_truth[ground_truth["conf"] != 0]
    if num_frames is not None:
        gt = gt[gt["frame"] <= num_frames]
    if gt.empty:
        raise ValueError("ground truth: no boxes to score against")
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    hyp_by_frame = {f: rows for f, rows in tracks.groupby("frame")} if not tracks.empty else {}
    gt_by_frame = {f: rows for f, rows in gt.groupby("frame")}
    last = max(max(gt_by_frame), max(hyp_by_frame, default=0))
    empty = gt.iloc[:0]
    for frame in range(1, last + 1):
        g = gt_by_frame.get(frame, empty)
        h = hyp_by_frame.get(frame, empty)
        distances = motmetrics.distances.iou_matrix(g[["x", "y", "w", "h"]].to_numpy(float),
                                                    h[["x", "y", "w", "h"]].to_numpy(float),
                                                    max_iou=1.0 - iou_threshold)
        accumulator.update(g["id"].to_numpy(), h["id"].to_numpy(), distances, frameid=frame)
    return accumulator


def _switches(accumulator: Any) -> list[tuple[int, int, int, int]]:
    last_track: dict[int, int] = {}
    out = []
    for (frame, _), event in accumulator.mot_events.iterrows():
        if event["Type"] not in ("MATCH", "SWITCH"):
            continue
        gt_id, track_id = int(event["OId"]), int(event["HId"])
        if event["Type"] == "SWITCH":
            out.append((int(frame), gt_id, last_track.get(gt_id, -1), track_id))
        last_track[gt_id] = track_id
    return out


def id_switches(ground_truth: pd.DataFrame, tracks: pd.DataFrame, iou_threshold: float = 0.5,
                num_frames: int | None = None) -> list[tuple[int, int, int, int]]:
    """Each identity switch as (frame from 1, true id, the track id it had, the track id it got)."""
    return _switches(_accumulate(ground_truth, tracks, iou_threshold, num_frames))


def mot_scores_and_switches(ground_truth: pd.DataFrame, tracks: pd.DataFrame, iou_threshold: float = 0.5,
                            num_frames: int | None = None) -> tuple[dict[str, Any], list[tuple[int, int, int, int]]]:
    """:func:`mot_scores` and :func:`id_switches` from one matching (the slow part on long videos)."""
    accumulator = _accumulate(ground_truth, tracks, iou_threshold, num_frames)
    return _scores(accumulator, tracks, iou_threshold), _switches(accumulator)


def mot_scores(ground_truth: pd.DataFrame, tracks: pd.DataFrame, iou_threshold: float = 0.5,
               num_frames: int | None = None) -> dict[str, Any]:
    """CLEAR-MOT and identity scores of ``tracks`` against ``ground_truth`` (both from :func:`read_mot`).

    Matching is by box IoU ≥ ``iou_threshold``. Ground-truth rows with conf 0 are ignored.
    Frames past ``num_frames`` (a video cut short) are left out of the ground truth.

    Returns:
        mota, idf1, motp (mean 1 - IoU of matches), precision, recall, id_switches,
        fragmentations, mostly_tracked, mostly_lost, num_unique_objects, num_tracks,
        num_false_positives, num_misses.
    """
    return _scores(_accumulate(ground_truth, tracks, iou_threshold, num_frames), tracks, iou_threshold)


def _scores(accumulator: Any, tracks: pd.DataFrame, iou_threshold: float) -> dict[str, Any]:
    import motmetrics

    names = {"mota": "mota", "idf1": "idf1", "motp": "motp", "precision": "precision", "recall": "recall",
             "num_switches": "id_switches", "num_fragmentations": "fragmentations",
             "mostly_tracked": "mostly_tracked", "mostly_lost": "mostly_lost",
             "num_unique_objects": "num_unique_objects", "num_false_positives": "num_false_positives",
             "num_misses": "num_misses"}
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(names), name="run")
    row = summary.loc["run"]
    result: dict[str, Any] = {}
    for key, out in names.items():
        value = row[key]
        result[out] = int(value) if key.startswith(("num_", "mostly")) else \
            (round(float(value), 6) if np.isfinite(value) else None)
    result["num_tracks"] = int(tracks["id"].nunique()) if not tracks.empty else 0
    result["iou_threshold"] = iou_threshold
    return result
