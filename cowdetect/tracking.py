"""Following each cow through a video: Norfair's tracker over DetectorBox detections.

:class:`CowTracker` turns per-frame :class:`Detections` (xyxy pixels) into tracks with stable
ids; :func:`track_video` is the whole pipeline — decode (a thread) → detect every k-th frame
in batches → track → draw ids and trails → encode H.264 (a thread) — streaming frames, so
memory stays constant however long the video is. It writes the annotated MP4, the tracks
as MOTChallenge text and as CSV (with each frame's time, for variable-frame-rate video).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import cv2
import numpy as np
from norfair import Detection, Tracker
from norfair.distances import VectorizedDistance, iou

from .config import TrackConfig
from .detections import Detections
from .draw import draw_tracks
from .framecache import FrameDetections
from .mot import mot_line
from .video import Frame, VideoInfo, VideoReader, VideoWriter, check_frame_size


def centroid_distance(candidates: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """(N, M) distances between box centres, in units of each tracked box's diagonal.

    Both inputs are (K, 4) xyxy boxes. Relative to box size, one threshold suits a cow far
    away and one filling the frame, at any resolution.
    """
    c = (candidates[:, :2] + candidates[:, 2:]) / 2
    o = (objects[:, :2] + objects[:, 2:]) / 2
    diagonal = np.hypot(objects[:, 2] - objects[:, 0], objects[:, 3] - objects[:, 1])
    return np.linalg.norm(c[:, None, :] - o[None, :, :], axis=2) / np.maximum(diagonal, 1.0)[None, :]


# name -> (vectorized distance on (K, 4) xyxy boxes, default threshold, what it means)
DISTANCES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], float, str]] = {
    "iou": (iou, 0.8, "1 - IoU of the boxes: 0.8 matches boxes overlapping by IoU 0.2 or more"),
    "centroid": (centroid_distance, 0.5, "centre distance / box diagonal: 0.5 allows half a cow's size of motion"),
}


def get_distance(name: str) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], float, str]:
    """The distance function, default threshold and description for ``name``."""
    if name not in DISTANCES:
        raise ValueError(f"distance: expected one of {sorted(DISTANCES)}, got {name!r}")
    return DISTANCES[name]


@dataclass
class Tracks:
    """Tracked boxes in one frame: ids, xyxy pixels (N, 4), the last matched detection's score,
    and whether a detection was matched in this very frame (False: the Kalman filter's guess)."""

    ids: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray
    detected: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


class CowTracker:
    """Norfair's tracker with box distances, plus each track's recent centres (for trails).

    Call :meth:`update` once per frame, with the frame's detections or ``None`` on frames the
    detector skipped (``period`` = frames since the last detection, so hit counters stay in
    frames).
    """

    def __init__(self, config: TrackConfig = TrackConfig()) -> None:
        function, default_threshold, _ = get_distance(config.distance)
        self.config = config
        threshold = config.distance_threshold if config.distance_threshold is not None else default_threshold
        if not threshold > 0:
            raise ValueError(f"distance_threshold: expected a positive number, got {threshold}")
        self.tracker = Tracker(distance_function="iou", distance_threshold=threshold,
                               hit_counter_max=config.hit_counter_max,
                               initialization_delay=config.initialization_delay)
        # Norfair 2.3 accepts only names or scalar (slow, per-pair) functions; a vectorized one
        # for our own box distances goes in afterwards, where the tracker keeps it.
        self.tracker.distance_function = VectorizedDistance(function)
        self.trails: dict[int, deque[tuple[float, float]]] = {}

    def update(self, detections: Detections | None, period: int = 1) -> Tracks:
        """Advance one frame; returns the tracks that have an id (initialised) in this frame."""
        norfair_detections: list[Detection] = []
        if detections is None:
            objects = self.tracker.update(period=period)
        else:
            norfair_detections = [
                Detection(points=box.reshape(2, 2).astype(np.float64), scores=np.array([score, score]),
                          label="object", data=float(score))
                for box, score in zip(detections.xyxy, detections.score
                                      if detections.score is not None else np.ones(len(detections)))]
            objects = self.tracker.update(detections=norfair_detections, period=period)
        current = {id(d) for d in norfair_detections}
        ids, boxes, scores, detected = [], [], [], []
        for obj in objects:
            box = obj.estimate.reshape(4)
            ids.append(int(obj.id))
            boxes.append(box)
            scores.append(float(obj.last_detection.data) if obj.last_detection is not None else 0.0)
            detected.append(id(obj.last_detection) in current)
            trail = self.trails.setdefault(int(obj.id), deque(maxlen=max(1, self.config.trail_length)))
            trail.append((float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2))
        alive = set(ids)
        for gone in [i for i in self.trails if i not in alive]:
            del self.trails[gone]  # constant memory: only live tracks keep a trail
        return Tracks(np.array(ids, np.int64), np.array(boxes, np.float32).reshape(-1, 4),
                      np.array(scores, np.float32), np.array(detected, bool))


@dataclass
class TrackResult:
    """What :func:`track_video` did. Paths are those given; times in seconds."""

    frames: int                 # frames processed
    frames_expected: int        # frames the header announced (0 = unknown)
    width: int
    height: int
    video_fps: float
    seconds: float              # wall time of the pipeline
    detector_seconds: float     # of which inside the detector
    detected_frames: int        # frames whose detections the tracker got (every k-th)
    num_tracks: int
    max_cows_in_frame: int
    stopped: bool = False       # the caller asked to stop
    warning: str | None = None  # e.g. the file was cut off: where decoding ended
    settings: dict[str, Any] = field(default_factory=dict)
    reused_frames: int = 0      # of the detected frames, those read from the cache, not detected again

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time, end to end."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with ``fps``)."""
        return {**asdict(self), "fps": round(self.fps, 2)}


# progress(frames done, frames expected (0 = unknown), latest annotated RGB frame) -> keep going?
Progress = Callable[[int, int, np.ndarray], bool]


class FrameHook(Protocol):
    """Something that follows the tracks frame by frame (counting lines, zones) and draws on the
    annotated frame. :func:`track_video` calls :meth:`update` for every frame after tracking, then
    :meth:`draw` on the frame being written (when a video is written)."""

    def update(self, frame: Frame, tracks: Tracks) -> None:
        """``frame``: the decoded frame (index, time, RGB); ``tracks``: its tracks, xyxy pixels of
        the full-size frame."""

    def draw(self, rgb: np.ndarray, scale: float) -> None:
        """Draw in place on ``rgb`` (the annotated RGB frame, ``scale`` × the full-size frame)."""


class FrameSink(Protocol):
    """Where annotated frames go: :class:`~cowdetect.video.VideoWriter`, or a writer of segments."""

    def write(self, frame: np.ndarray) -> None:
        """Add one RGB uint8 frame (H, W, 3)."""

    def close(self) -> None:
        """Finish the output; ValueError when nothing could be encoded."""


def _resize(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(2, round(w * scale)), max(2, round(h * scale))), interpolation=cv2.INTER_AREA)


def _select(detections: Detections, config: TrackConfig) -> Detections:
    """Keep the configured classes above the score threshold."""
    detections = detections.above(config.score_threshold)
    return detections[np.isin(np.array(detections.names, dtype=object), config.classes)] if len(detections) \
        else detections


def _check_classes(detector: Any, config: TrackConfig) -> None:
    """Raise ValueError when the detector does not know every class the tracker follows."""
    missing = [c for c in config.classes if c not in detector.classes]
    if missing:
        raise ValueError(f"classes: the model {detector.architecture} does not know {missing}; "
                         f"it detects {list(detector.classes)[:12]}{'...' if len(detector.classes) > 12 else ''}")


class _Pipeline:
    """One :func:`track_video` call: the tracker, the open outputs and the counts for its result.

    Frames arrive in batches of ``detect_every * batch_size`` (see :meth:`feed`), so every
    detector call gets ``batch_size`` frames while only a bounded number wait in memory.
    """

    def __init__(self, detector: Any, info: VideoInfo, out_video: str | Path | FrameSink | None, out_mot: str | Path,
                 out_csv: str | Path | None, config: TrackConfig, progress: Progress | None,
                 cache: FrameDetections | None, hooks: Sequence[FrameHook] = ()) -> None:
        self.detector, self.info, self.config, self.progress, self.cache = detector, info, config, progress, cache
        self.hooks = tuple(hooks)
        self.detect_scale = min(1.0, config.max_detect_side / max(info.width, info.height))
        self.out_scale = min(1.0, config.max_output_side / max(info.width, info.height))
        self.tracker = CowTracker(config)
        self.writer: FrameSink | None = out_video if out_video is None or hasattr(out_video, "write") else \
            VideoWriter(out_video, fps=info.fps or 25.0, preset="ultrafast", crf=23, background=True)
        self.mot_file = open(out_mot, "w")
        self.csv_file = open(out_csv, "w") if out_csv is not None else None
        if self.csv_file:
            self.csv_file.write("frame,time_s,id,x1,y1,x2,y2,score,detected\n")
        self.started = time.perf_counter()
        self.detector_seconds = 0.0
        self.done = self.detected_frames = self.max_in_frame = self.reused_frames = 0
        self.seen_ids: set[int] = set()
        self.stopped = False

    def feed(self, reader: VideoReader) -> None:
        """Track every frame of ``reader`` in batches, until its end or until progress says stop."""
        pending: list[Frame] = []  # frames waiting for their batch's detections (bounded)
        batch_span = self.config.detect_every * self.config.batch_size
        for frame in reader:
            pending.append(frame)
            if len(pending) >= batch_span:
                batch, pending = pending, []
                if not self.flush(batch):
                    self.stopped = True
                    break
        if pending and not self.stopped:
            self.stopped = not self.flush(pending)

    def flush(self, batch: list[Frame]) -> bool:
        """Detect, track, write and draw ``batch``; False when progress asked to stop."""
        found = self.detect(batch)
        for f in batch:
            dets = found.get(f.index)
            tracks = self.tracker.update(dets, period=self.config.detect_every if dets is not None else 1)
            self.seen_ids.update(tracks.ids.tolist())
            self.max_in_frame = max(self.max_in_frame, len(tracks))
            self.write_tracks(f, tracks)
            for hook in self.hooks:
                hook.update(f, tracks)
            drawn = self.draw(f, tracks)
            self.done += 1
            if self.progress is not None and not self.progress(self.done, self.info.frames, drawn):
                return False
        return True

    def detect(self, batch: list[Frame]) -> dict[int, Detections]:
        """The selected detections of the batch's every k-th frame, from the cache or the detector."""
        keyed = [f.index for f in batch if f.index % self.config.detect_every == 0]
        raw = {i: self.cache.get(i) for i in keyed} if self.cache is not None else {}
        todo = [f for f in batch if f.index in keyed and raw.get(f.index) is None]
        self.reused_frames += len(keyed) - len(todo)
        if todo:
            t0 = time.perf_counter()
            # With tiles the full frame is cut: each tile is resized to the model's input anyway, and a
            # downscale first would shrink the very cows tiles are for. Keyword only when tiling, so any
            # object with the plain predict(images, batch_size) detects.
            tiled = self.config.tiles != "off"
            scale = 1.0 if tiled else self.detect_scale
            frames = [_resize(f.rgb, scale) for f in todo]
            extra = {"tiles": self.config.tiles} if tiled else {}
            outputs = self.detector.predict(frames, batch_size=len(todo), **extra)
            self.detector_seconds += time.perf_counter() - t0
            for f, dets in zip(todo, outputs):
                raw[f.index] = dets.scaled(1.0 / scale)
                if self.cache is not None:
                    self.cache.put(f.index, raw[f.index])
        found = {i: _select(raw[i], self.config) for i in keyed}
        self.detected_frames += len(keyed)
        return found

    def write_tracks(self, f: Frame, tracks: Tracks) -> None:
        """Append the frame's tracks to the MOTChallenge file and the CSV."""
        for track_id, box, score in zip(tracks.ids, tracks.xyxy, tracks.score):
            self.mot_file.write(mot_line(f.index, int(track_id), box, float(score)))
        if self.csv_file:
            for track_id, box, score, hit in zip(tracks.ids, tracks.xyxy, tracks.score, tracks.detected):
                self.csv_file.write(f"{f.index + 1},{f.time:.4f},{track_id},{box[0]:.2f},{box[1]:.2f},"
                                    f"{box[2]:.2f},{box[3]:.2f},{score:.4f},{int(hit)}\n")

    def draw(self, f: Frame, tracks: Tracks) -> np.ndarray:
        """The annotated frame, also sent to the encoder; the bare frame when no video is written."""
        if self.writer is None:
            return f.rgb
        drawn = draw_tracks(_resize(f.rgb, self.out_scale).copy(), tracks.xyxy, tracks.ids.tolist(),
                            [self.tracker.trails[int(i)] for i in tracks.ids], scale=self.out_scale)
        for hook in self.hooks:
            hook.draw(drawn, self.out_scale)
        self.writer.write(drawn)
        return drawn

    def close(self) -> None:
        """Close the outputs; an encoder error with no frame written is left to the caller's own error."""
        self.mot_file.close()
        if self.csv_file:
            self.csv_file.close()
        if self.writer is not None:
            try:
                self.writer.close()
            except ValueError:
                if self.done:
                    raise
                # no frame at all: nothing to encode, and the error in track_video says why

    def result(self, reader: VideoReader) -> TrackResult:
        """What was done, for :func:`track_video` to return."""
        info = self.info
        return TrackResult(frames=self.done, frames_expected=info.frames, width=info.width, height=info.height,
                           video_fps=info.fps, seconds=round(time.perf_counter() - self.started, 3),
                           detector_seconds=round(self.detector_seconds, 3), detected_frames=self.detected_frames,
                           num_tracks=len(self.seen_ids), max_cows_in_frame=self.max_in_frame,
                           stopped=self.stopped, warning=None if self.stopped else reader.error,
                           settings=asdict(self.config), reused_frames=self.reused_frames)


def track_video(video: str | Path, detector: Any, out_video: str | Path | FrameSink | None, out_mot: str | Path,
                out_csv: str | Path | None = None, config: TrackConfig = TrackConfig(),
                progress: Progress | None = None, cache: FrameDetections | None = None,
                hooks: Sequence[FrameHook] = ()) -> TrackResult:
    """Track the cows in ``video`` with ``detector`` (a DetectorBox); write the results.

    Args:
        video: a video file FFmpeg reads (MP4, MOV, MKV, WebM, AVI...). Rotation metadata is
            applied; frames larger than ``config.max_detect_side`` are detected downscaled.
        detector: a :class:`~cowdetect.DetectorBox` whose classes include ``config.classes``.
        out_video: the annotated H.264 MP4 (boxes with ids and trails), a :class:`FrameSink` that
            takes the annotated frames, or None to skip drawing.
        out_mot: tracks as MOTChallenge text (frame from 1, id, x, y, w, h, score, -1, -1, -1).
        out_csv: tracks as CSV with each frame's time: frame, time_s, id, x1, y1, x2, y2, score, detected.
        progress: called after every frame; return False to stop (the outputs keep what was done).
        cache: the detector's detections per frame of this video at this detection size (see
            :mod:`cowdetect.framecache`): frames it holds are not detected again, frames it
            lacks are detected and added. Its detections are the model's own, before the score
            threshold and class filter, so one cache serves any tracker settings.
        hooks: :class:`FrameHook` s (line and zone counters) that see every frame's tracks and draw
            on the annotated video.

    Returns:
        :class:`TrackResult`. A video cut off mid-stream is not an error: the frames read
        are kept and ``warning`` says at which frame decoding ended.

    Raises:
        ValueError: not a video, no decodable frame, or the detector knows none of ``config.classes``.
    """
    _check_classes(detector, config)
    reader = VideoReader(video)
    info = reader.info
    try:
        check_frame_size(info, Path(video).name)
    except ValueError:
        reader.close()  # its decode thread would otherwise outlive the refusal
        raise
    pipeline = _Pipeline(detector, info, out_video, out_mot, out_csv, config, progress, cache, hooks)
    try:
        pipeline.feed(reader)
    finally:
        reader.close()
        pipeline.close()
    if pipeline.done == 0 and not pipeline.stopped:
        raise ValueError(f"video {Path(video).name}: no frame could be decoded ({reader.error or 'empty'})")
    return pipeline.result(reader)
