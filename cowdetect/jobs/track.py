"""The tracking job: follow each cow through a stored video with Norfair, keeping each frame's detections.

:func:`add_video` checks and stores an upload; :func:`tracking_settings` checks a request and
:func:`create_tracking_run` queues it; :func:`run_tracking` runs it (a worker process, or
``python -m cowdetect track`` in the foreground).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import TrackConfig, detector_dict, from_dict, to_dict
from ..counting import Counter
from ..geometry import geometry_from_dict
from ..detector import DetectorBox, resolve_device
from ..files import atomic_write_bytes
from ..framecache import FrameDetections
from ..images import encode_image
from ..models import ModelRef, resolve
from ..store import RunRecord, Store, VideoRecord, now
from ..tiling import TILING_VERSION, check_grid, parse_tiles, tiles_text
from .machinery import Log, Ticker, create_run, recorded, start, stderr_log

if TYPE_CHECKING:  # tracking.py imports Norfair: only when a run tracks
    from ..tracking import TrackResult

# What a tracking run leaves in runs/run-N/.
TRACK_FILES = {"video": "tracked.mp4", "mot": "tracks.mot.txt", "csv": "tracks.csv", "preview": "preview.jpg",
               "counts": "counts.csv"}


def check_video_file(path: Path, name: str) -> Any:
    """The :class:`~cowdetect.video.VideoInfo` of the video file at ``path``, uploaded or given as
    ``name`` (which every message names): a known suffix, not empty, a frame that decodes, frames
    no larger than :data:`cowdetect.video.MAX_FRAME_PIXELS`. Nothing is stored.

    Raises:
        ValueError: any of those is not so.
    """
    from ..video import check_frame_size, probe_video

    _video_suffix(name)
    if path.stat().st_size == 0:
        raise ValueError(f"{name}: the file is empty")
    try:
        info = probe_video(path)
    except ValueError as exc:
        raise ValueError(str(exc).replace(str(path), Path(name).name).replace(path.name, Path(name).name)) from None
    return check_frame_size(info, Path(name).name)


def _video_suffix(name: str) -> str:
    """The suffix of the video file ``name``, lower case, when it is a video's (else ValueError)."""
    from ..video import VIDEO_SUFFIXES

    suffix = Path(name).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{name}: expected a video file ({', '.join(VIDEO_SUFFIXES)}), got {suffix or 'no extension'}")
    return suffix


def _check_ground_truth(text: str, scratch: Path, name: str) -> None:
    """Refuse ground truth that is not MOTChallenge text; the message names the video, not the scratch file."""
    from ..mot import read_mot

    gt_path = scratch.with_suffix(".gt.txt")
    gt_path.write_text(text)
    try:
        read_mot(gt_path)
    except ValueError as exc:
        reason = str(exc).replace(f"MOT file {gt_path.name}: ", "").replace(str(gt_path), "the file")
        raise ValueError(f"ground truth for {name}: {reason.replace(gt_path.name, 'the file')}") from None
    finally:
        gt_path.unlink(missing_ok=True)


def add_video(store: Store, data: bytes, name: str, ground_truth: str | None = None) -> tuple[VideoRecord, str]:
    """Check and store an uploaded video (and optional MOTChallenge ground truth).

    The bytes are probed from a scratch file inside the data folder before anything is
    stored (:func:`check_video_file`), so a file that is not a video, has no decodable frame or
    has frames too large changes nothing. A video already stored gets the ground truth given
    with it. Returns the record and a sentence saying what was done.

    Raises:
        ValueError: an unknown file type, not a video, no frames, frames too large, or ground truth
            that is not MOTChallenge text.
    """
    suffix = _video_suffix(name)  # before anything is written
    scratch = store.inside("tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    probe_path = scratch / f"probe-{os.getpid()}-{time.monotonic_ns()}{suffix}"
    try:
        probe_path.write_bytes(data)
        info = check_video_file(probe_path, name)
        if ground_truth is not None:
            _check_ground_truth(ground_truth, probe_path, Path(name).name)
    finally:
        probe_path.unlink(missing_ok=True)
    return store.add_video(data, Path(name).name, info.width, info.height, info.fps, info.frames, ground_truth)


def check_track_config(config: dict[str, Any], width: int | None = None, height: int | None = None
                       ) -> TrackConfig:
    """The :class:`~cowdetect.config.TrackConfig` of ``config`` (its fields, defaults left out),
    checked before any work: every field, the distance, the tiles, and — given the frames' size —
    that the tile grid is not too fine for them.

    Raises:
        ValueError: an unknown or bad setting.
    """
    from ..tracking import get_distance

    track_config = from_dict(TrackConfig, config)
    get_distance(track_config.distance)
    track_config = dataclasses.replace(track_config, tiles=tiles_text(track_config.tiles))
    if width and height:  # a grid too fine for the frames is refused now, not mid-run
        check_grid(parse_tiles(track_config.tiles), width, height)
    return track_config


def tracking_settings(store: Store, video_id: int, model: str = "active", device: str = "auto",
                      geometry: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    """Check and complete the settings of a tracking run.

    ``model``: a model spec (:data:`cowdetect.models.MODEL_SPEC_HELP`); ``config``:
    :class:`~cowdetect.config.TrackConfig` fields; ``geometry``: counting lines and zones
    (:func:`cowdetect.geometry.geometry_to_dict`), None for those saved with the video. They are
    checked against the video's frames and kept in the run's settings (a later change to the
    video's lines does not change what this run counts).

    Raises:
        ValueError: an unknown video, model or setting, or lines / zones that do not fit the frames.
    """
    video = store.video(video_id)
    track_config = check_track_config(config, video.width, video.height)
    counting = check_counting(geometry if geometry is not None else video.geometry, video.width, video.height)
    dev = resolve_device(device)
    ref = resolve(store, model, dev)
    return {"video_id": video_id, "model": ref.pinned, "model_label": ref.label, "device": str(dev),
            "config": to_dict(track_config), "geometry": counting}


def check_counting(geometry: dict[str, Any], width: int | None, height: int | None) -> dict[str, Any]:
    """``geometry`` (:func:`cowdetect.geometry.geometry_to_dict`) checked — against a ``width`` ×
    ``height`` frame when known — and written out again in its one form ({} when empty).

    Raises:
        ValueError: malformed, misnamed, or a point outside the frame.
    """
    from ..geometry import check_geometry, geometry_from_dict, geometry_to_dict

    lines, zones = geometry_from_dict(geometry)
    check_geometry(lines, zones, width or None, height or None)
    return geometry_to_dict(lines, zones) if lines or zones else {}


def create_tracking_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a tracking run with checked ``settings`` (see :func:`tracking_settings`); returns its id."""
    return create_run(store, "track", settings, int(store.video(settings["video_id"]).frames or 0))


def track_outputs(store: Store, run_id: int) -> dict[str, Path]:
    """Absolute paths of a tracking run's files (video, mot, csv, preview); they may not exist yet."""
    folder = store.inside(Path("runs") / f"run-{run_id}")
    return {key: folder / name for key, name in TRACK_FILES.items()}


def detection_cache(store: Store, video: VideoRecord, box: DetectorBox, ref: ModelRef,
                    max_detect_side: int, tiles: str = "off") -> FrameDetections:
    """The kept detections (:class:`~cowdetect.framecache.FrameDetections`) of ``video`` under
    ``box`` (opened from ``ref``) at this detection size, in cache/detections/
    (:func:`detection_cache_path`)."""
    return FrameDetections(detection_cache_path(store, video, box, ref, max_detect_side, tiles), box.class_names)


def detection_cache_path(store: Store, video: VideoRecord, box: DetectorBox, ref: ModelRef, max_detect_side: int,
                         tiles: str = "off", device_type: str | None = None) -> Path:
    """Where the detections of ``video`` under ``box`` are kept: named by everything they depend on
    (video content, the weights, detector settings, device type — ``box``'s unless ``device_type``
    says where they are computed —, detection size, tiling) and nothing they do not (score
    threshold, tracker settings, every-k-th), so a changed model or video never reads stale boxes.
    """
    if ref.checkpoint is not None:
        stat = ref.checkpoint.stat()
        weights = f"{ref.checkpoint}:{stat.st_size}:{stat.st_mtime_ns}"
    else:
        weights = f"{ref.kind}:{box.architecture}"
    key = {"video": video.sha256, "weights": weights, "detector": detector_dict(box.config),
           "device": device_type or box.device.type, "max_detect_side": max_detect_side}
    if tiles != "off":  # untiled keys stay as they were, so caches kept before tiling still serve
        key["tiles"], key["tiling"] = tiles, TILING_VERSION
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return store.inside(Path("cache") / "detections" / f"{name}.f32")


class _Preview:
    """The tracking progress callback: the latest annotated frame and frames done, about once a second."""

    def __init__(self, store: Store, run_id: int, path: Path) -> None:
        self.ticker, self.path = Ticker(store, run_id), path

    def __call__(self, done: int, total: int, frame: np.ndarray) -> bool:
        if not self.ticker.due(done, total):
            return True
        atomic_write_bytes(self.path, encode_image(frame, "JPEG", 85))
        return self.ticker.report(done, total)


def run_tracking(store: Store, run_id: int, log: Log | None = None) -> RunRecord:
    """Run tracking run ``run_id`` to its end; the job function of workers and the CLI's ``track``.

    Writes progress (frames done) and a preview frame about once a second, honours stop
    requests (the files keep what was done), and at the end stores the summary — MOTA /
    IDF1 when the video has ground truth, and the frames worth labeling (``to_label``,
    :mod:`.tolabel`) — in the run's metrics. Returns the final row.
    """
    log = log or stderr_log
    run = start(store, run_id, "track", log)
    if run.status == "stopped":
        return run
    with recorded(store, run_id):
        settings = run.params
        video = store.video(settings["video_id"])
        ref = resolve(store, settings["model"], settings["device"])
        box = DetectorBox.open(ref, settings["device"], weights_dir=store.weights_dir)
        log(f"run {run_id}: tracking {video.original_name} ({video.frames} frames) with {settings['model_label']}")
        result, counts = _track(store, run_id, video, box, ref, from_dict(TrackConfig, settings["config"]), log,
                                settings.get("geometry", {}))  # runs before counting had no geometry
        return finish_tracking(store, run_id, video, result, counts, log)


def finish_tracking(store: Store, run_id: int, video: VideoRecord, result: TrackResult, counts: dict[str, Any],
                    log: Log) -> RunRecord:
    """End tracking run ``run_id`` whose files are written: its summary (``result``, a
    :class:`~cowdetect.tracking.TrackResult`), ``counts`` (:meth:`Counter.summary`), MOTA / IDF1 when
    the video has ground truth and the frames worth labeling go into its metrics. Returns the row."""
    metrics: dict[str, Any] = {"summary": result.as_dict(), "counts": counts}
    switches = None
    if video.gt_path is not None and result.frames:
        from ..mot import mot_scores_and_switches, read_mot
        metrics["mot"], switches = mot_scores_and_switches(
            read_mot(video.gt_path), read_mot(track_outputs(store, run_id)["mot"]), num_frames=result.frames)
    status = "stopped" if result.stopped else "done"
    if result.frames:
        metrics["to_label"], note = _frames_to_label(store, run_id, result.frames, switches, log)
        result = dataclasses.replace(result, warning="; ".join(filter(None, (result.warning, note))) or None)
    store.update_run(run_id, status=status, iteration=result.frames, total=max(result.frames,
                     result.frames_expected), metrics=metrics, error=result.warning, finished_at=now())
    log(f"run {run_id}: {status}; {result.frames} frames at {result.fps:.1f} fps, {result.num_tracks} tracks"
        + (f"; MOTA {metrics['mot']['mota']:.3f} IDF1 {metrics['mot']['idf1']:.3f}" if "mot" in metrics else "")
        + (f"; {result.warning}" if result.warning else ""))
    return store.run(run_id)


def _frames_to_label(store: Store, run_id: int, frames: int, switches: list | None, log: Log
                     ) -> tuple[list[dict[str, Any]], str | None]:
    """The frames worth labeling (:mod:`.tolabel`) and a warning; never fails the tracking itself,
    which is done and stored by now (an analysis error becomes the warning, the list empty)."""
    from .tolabel import find_frames_to_label

    try:
        return find_frames_to_label(store, run_id, frames, switches), None
    except (ValueError, OSError, KeyError) as exc:
        log(f"run {run_id}: finding the frames worth labeling failed: {exc}")
        return [], f"the frames worth labeling could not be listed ({exc})"


def _track(store: Store, run_id: int, video: VideoRecord, box: DetectorBox, ref: ModelRef, config: TrackConfig,
           log: Log, geometry: dict[str, Any]) -> tuple[TrackResult, dict[str, Any]]:
    """The tracking pipeline over the stored video into the run's folder, reading and filling the
    detection cache (:func:`track_files`)."""
    outputs = track_outputs(store, run_id)
    outputs["video"].parent.mkdir(parents=True, exist_ok=True)
    with detection_cache(store, video, box, ref, config.max_detect_side, config.tiles) as cache:
        if len(cache):
            log(f"run {run_id}: {len(cache)} frames already detected (kept from an earlier run) are not "
                f"detected again")
        return track_files(video.path, box, outputs, config, geometry, cache,
                           _Preview(store, run_id, outputs["preview"]))


def track_files(source: Path, box: DetectorBox, outputs: dict[str, Path], config: TrackConfig,
                geometry: dict[str, Any], cache: FrameDetections, progress: Any) -> tuple[TrackResult, dict[str, Any]]:
    """Track ``source`` into the files ``outputs`` names (:data:`TRACK_FILES` keys; the preview is
    ``progress``'s), counting on ``geometry``'s lines and zones; the one pipeline of a tracking run,
    here or on a Ray worker. Returns the :class:`~cowdetect.tracking.TrackResult` and the counts
    (:meth:`~cowdetect.counting.Counter.summary`)."""
    from ..tracking import track_video

    counter = Counter(*geometry_from_dict(geometry))
    result = track_video(source, box, outputs["video"], outputs["mot"], outputs["csv"], config, progress=progress,
                         cache=cache, hooks=[counter])
    counter.write_csv(outputs["counts"])
    return result, counter.summary()
