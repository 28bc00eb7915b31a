"""After a tracking run: the frames worth labeling (:mod:`cowdetect.trackbreaks`), their
thumbnails, and adding them to the dataset with the tracker's boxes as suggestions.

The tracking job calls :func:`find_frames_to_label` at its end (the list goes into the run's
metrics as ``to_label``, thumbnails into ``runs/run-N/to_label/``); the Track page and
``python -m cowdetect import-video VIDEO --from-run RUN`` call :func:`import_run_frames`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..detections import Detections
from ..frames import FrameImport
from ..files import atomic_write_bytes
from ..images import encode_image
from ..store import Store, VideoRecord
from ..trackbreaks import BreakConfig, frames_to_label, tracker_boxes

THUMB_WIDTH = 320


def _tracks(path: Path) -> Any:
    import pandas as pd

    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def _thumb_path(store: Store, run_id: int, frame: int) -> Path:
    return store.inside(Path("runs") / f"run-{run_id}" / "to_label" / f"f{frame:06d}.jpg")


def _compute(store: Store, run_id: int, frames: int | None = None, switches: list | None = None
             ) -> tuple[list[dict[str, Any]], Any]:
    """The run's frames to label and its track table. ``frames``: how many were tracked (default:
    the run's progress); ``switches``: from :func:`cowdetect.mot.mot_scores_and_switches` when the
    caller has them (None: found here when the video has ground truth)."""
    from ..mot import id_switches, read_mot
    from .track import track_outputs

    run = store.run(run_id)
    video = store.video(run.params["video_id"])
    outputs = track_outputs(store, run_id)
    tracks = _tracks(outputs["csv"])
    frames = int(frames or run.iteration or (tracks["frame"].max() if not tracks.empty else 0))
    if switches is None and video.gt_path is not None and outputs["mot"].is_file() and frames:
        try:
            switches = id_switches(read_mot(video.gt_path), read_mot(outputs["mot"]), num_frames=frames)
        except ValueError:  # ground truth without boxes in the tracked frames: no switches to find
            switches = None
    config = run.params["config"]
    found = frames_to_label(tracks, int(video.width or 1), int(video.height or 1), float(video.fps or 25.0),
                            frames, int(config.get("detect_every", 1)), switches, BreakConfig(),
                            int(config.get("initialization_delay", 0)))
    return [f.as_dict() for f in found], tracks


def _write_thumbnails(store: Store, run_id: int, video: VideoRecord, wanted: list[int], tracks: Any) -> None:
    """A small picture of each wanted frame with the tracker's boxes. Decodes the video up to the
    last one, converting only the wanted frames."""
    import cv2

    from ..draw import draw_tracks
    from ..video import VideoReader

    todo, last = set(wanted), max(wanted)
    reader = VideoReader(video.path, wanted=lambda index, _time: index in todo)
    try:
        for frame in reader:
            scale = THUMB_WIDTH / frame.rgb.shape[1]
            small = cv2.resize(frame.rgb, (THUMB_WIDTH, max(2, round(frame.rgb.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
            rows = tracks[tracks["frame"] == frame.index + 1]
            draw_tracks(small, rows[["x1", "y1", "x2", "y2"]].to_numpy(), rows["id"].tolist(), scale=scale)
            atomic_write_bytes(_thumb_path(store, run_id, frame.index), encode_image(small, "JPEG", 85))
            if frame.index >= last:
                break
    finally:
        reader.close()


def find_frames_to_label(store: Store, run_id: int, frames: int | None = None, switches: list | None = None,
                         thumbnails: bool = True) -> list[dict[str, Any]]:
    """The frames of tracking run ``run_id`` worth labeling, as ``{frame, time, kind, reason,
    track_ids}`` dicts (frame index from 0, time in s); writes their thumbnails when ``thumbnails``.
    ``frames`` and ``switches`` as for the tracking job's end (see :func:`_compute`)."""
    found, tracks = _compute(store, run_id, frames, switches)
    if thumbnails and found:
        video = store.video(store.run(run_id).params["video_id"])
        _write_thumbnails(store, run_id, video, [f["frame"] for f in found], tracks)
    return found


def frames_to_label_of(store: Store, run_id: int) -> list[dict[str, Any]]:
    """What tracking run ``run_id`` found worth labeling, each with ``thumbnail`` (a path, or None).
    A run from before this list existed is analysed once, and the list kept in its metrics."""
    run = store.run(run_id)
    if run.kind != "track":
        raise ValueError(f"run {run_id} is a {run.kind} run, not a tracking run")
    if run.active:
        raise ValueError(f"run {run_id} is still {run.status}: its frames worth labeling are listed when it ends")
    found = run.metrics.get("to_label")
    if found is None:
        found = find_frames_to_label(store, run_id)
        if store.user.may("track"):  # a viewer sees the list; it is kept by those who may write runs
            store.update_run(run_id, metrics={**run.metrics, "to_label": found})
    out = []
    for item in found:
        path = _thumb_path(store, run_id, item["frame"])
        out.append({**item, "thumbnail": path if path.is_file() else None})
    return out


def tracker_suggestions(store: Store, run_id: int, frames: Sequence[int]) -> dict[int, Detections]:
    """The tracker's boxes (xyxy video px clipped to the frame, last matched detection's score) at
    each frame index, named with the class the run tracked (the store's first class otherwise)."""
    from .track import track_outputs

    run = store.run(run_id)
    video = store.video(run.params["video_id"])
    tracks = _tracks(track_outputs(store, run_id)["csv"])
    vocab = store.class_names()
    name = (run.params["config"].get("classes") or [vocab[1]])[0]
    name = name if name in vocab else vocab[1]
    out = {}
    for frame in frames:
        xyxy, score = tracker_boxes(tracks, int(frame)) if not tracks.empty else (np.zeros((0, 4)), np.zeros(0))
        # the Kalman filter's estimate of a cow walking out may reach past the border
        out[int(frame)] = Detections.from_names(xyxy, [name] * len(xyxy), vocab, score=score).clipped(
            int(video.width), int(video.height))
    return out


def import_run_frames(store: Store, run_id: int, frames: Sequence[int] | None = None, split: str = "unassigned",
                      progress: Any = None) -> FrameImport:
    """Add frames of tracking run ``run_id``'s video to the dataset (default: every frame it found
    worth labeling), each with the tracker's boxes as suggestions (source 'tracker, run N');
    returns a :class:`cowdetect.frames.FrameImport`. ``progress`` as for
    :func:`cowdetect.frames.import_frames`."""
    from ..frames import import_frames

    run = store.run(run_id)
    chosen = [f["frame"] for f in frames_to_label_of(store, run_id)] if frames is None else list(frames)
    if not chosen:
        raise ValueError(f"run {run_id}: no frames to add (it found none worth labeling)")
    return import_frames(store, run.params["video_id"], tracker_suggestions(store, run_id, chosen),
                         source=f"tracker, run {run_id}", run_id=run_id, split=split, progress=progress)
