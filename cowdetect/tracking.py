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
from norfair.tracker import TrackedObject

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


# Hue x saturation x value bins of the appearance embedding, and the margin of each box left out
# (a fraction of its width and height per side: the rim is mostly grass and neighbours). Chosen on
# the demo video's detections matched to its ground truth, apart from tracking scores: the same cow
# 1 s or more apart against two different cows, ROC AUC 0.969 (8x3x3 bins, 25 % margin: 0.908).
_HIST_BINS = (16, 4, 4)
_MARGIN = 0.15


def appearance(rgb: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(N, 256) appearance embeddings of the boxes ``xyxy`` ((N, 4) xyxy pixels) in the RGB frame.

    The colour histogram (HSV) of each box without its rim, square-rooted so that the dot product
    of two embeddings is their Bhattacharyya coefficient. A box's row is zero when it lies
    outside the frame.
    """
    h, w = rgb.shape[:2]
    out = np.zeros((len(xyxy), int(np.prod(_HIST_BINS))), np.float32)
    for row, (x1, y1, x2, y2) in enumerate(np.asarray(xyxy, np.float64)):
        dx, dy = (x2 - x1) * _MARGIN, (y2 - y1) * _MARGIN
        a, b = int(np.clip(x1 + dx, 0, w)), int(np.clip(x2 - dx, 0, w))
        c, d = int(np.clip(y1 + dy, 0, h)), int(np.clip(y2 - dy, 0, h))
        if b - a < 2 or d - c < 2:
            continue
        step = max(1, max(b - a, d - c) // 96)  # a histogram needs no more pixels: 4K costs what 360p does
        hsv = cv2.cvtColor(np.ascontiguousarray(rgb[c:d:step, a:b:step]), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(_HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
        out[row] = np.sqrt(hist / max(float(hist.sum()), 1.0))
    return out


def appearance_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance (0 same colours .. 1 nothing in common) of two :func:`appearance` rows."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.dot(a, b)))))


def _box(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64).reshape(4)


class _TwoPassTracker(Tracker):
    """Norfair's Tracker, with ByteTrack's second association for low-score detections.

    Norfair 2.3's ``update`` takes one list and starts a track from every detection it leaves
    unmatched, so a cow the detector half-sees (score 0.1-0.4) either starts false tracks or is
    dropped. This ``update`` runs Norfair's own steps (matching, hit counters, ReID merge, track
    creation) in ByteTrack's order: confident detections first, then low-score ones only for the
    tracks still unmatched, and only confident ones start tracks.
    """

    def update(self, detections: list[Detection] | None = None, period: int = 1,  # type: ignore[override]
               low_detections: list[Detection] | None = None) -> list[TrackedObject]:
        alive, dead = [], []
        kept = []
        for obj in self.tracked_objects:  # Norfair's pruning: dead tracks wait for ReID while it is on
            if obj.hit_counter_is_positive:
                alive.append(obj)
            elif self.reid_hit_counter_max is not None and obj.reid_hit_counter_is_positive:
                dead.append(obj)
            else:
                continue
            kept.append(obj)
        self.tracked_objects = kept
        for obj in self.tracked_objects:
            obj.tracker_step()
        confirmed = [o for o in alive if not o.is_initializing]
        left, _, lost = self._update_objects_in_place(self.distance_function, self.distance_threshold,
                                                      confirmed, detections, period)
        if low_detections:
            _, _, lost = self._update_objects_in_place(self.distance_function, self.distance_threshold,
                                                       lost, low_detections, period)
        left, started, _ = self._update_objects_in_place(self.distance_function, self.distance_threshold,
                                                         [o for o in alive if o.is_initializing], left, period)
        if self.reid_distance_function is not None:
            # Only tracks that had an id: merging into one that never got one would delay the new track.
            self._update_objects_in_place(self.reid_distance_function, self.reid_distance_threshold,
                                          lost + [o for o in dead if o.id is not None], started, period)
        for detection in left:
            self.tracked_objects.append(self._obj_factory.create(
                initial_detection=detection, hit_counter_max=self.hit_counter_max,
                initialization_delay=self.initialization_delay,
                pointwise_hit_counter_max=self.pointwise_hit_counter_max,
                detection_threshold=self.detection_threshold, period=period, filter_factory=self.filter_factory,
                past_detections_length=self.past_detections_length, reid_hit_counter_max=self.reid_hit_counter_max,
                coord_transformations=None))
        return self.get_active_objects()


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
    frames). Detections scoring at least ``config.score_threshold`` are matched first and start
    tracks; those between ``config.low_score_threshold`` and it only extend tracks left unmatched
    (ByteTrack's second association). With the frame's pixels (``rgb``), a new track that looks
    like (appearance embedding) and stands near a track lost in the last
    ``config.reid_hit_counter_max`` frames takes that track's id (Norfair's ReID).
    """

    def __init__(self, config: TrackConfig = TrackConfig()) -> None:
        function, default_threshold, _ = get_distance(config.distance)
        self.config = config
        threshold = config.distance_threshold if config.distance_threshold is not None else default_threshold
        if not threshold > 0:
            raise ValueError(f"distance_threshold: expected a positive number, got {threshold}")
        reid = config.reid_distance_threshold is not None
        self.tracker = _TwoPassTracker(
            distance_function="iou", distance_threshold=threshold, hit_counter_max=config.hit_counter_max,
            initialization_delay=config.initialization_delay,
            reid_distance_function=self._reid_distance if reid else None,
            reid_distance_threshold=config.reid_distance_threshold or 0.0,
            reid_hit_counter_max=config.reid_hit_counter_max if reid else None)
        # Norfair 2.3 accepts only names or scalar (slow, per-pair) functions; a vectorized one
        # for our own box distances goes in afterwards, where the tracker keeps it.
        self.tracker.distance_function = VectorizedDistance(function)
        self.trails: dict[int, deque[tuple[float, float]]] = {}

    def _reid_distance(self, new: TrackedObject, old: TrackedObject) -> float:
        """Appearance distance of a new track to a lost one; 1 (no match) when it starts farther from
        where the lost one was last seen than ``reid_gate`` of its box diagonals, or without pixels."""
        a = new.last_detection.embedding
        kept = [d.embedding for d in old.past_detections + [old.last_detection] if d.embedding is not None]
        if a is None or not kept:
            return 1.0
        where = _box(old.last_detection.points)
        if centroid_distance(_box(new.estimate)[None], where[None])[0, 0] > self.config.reid_gate:
            return 1.0
        return min(appearance_distance(a, b) for b in kept)

    def _detections(self, detections: Detections, rgb: np.ndarray | None) -> tuple[list[Detection], list[Detection]]:
        """Norfair detections: (confident, low-score) by the config's two thresholds."""
        score = detections.score if detections.score is not None else np.ones(len(detections), np.float32)
        embeddings = appearance(rgb, detections.xyxy) if rgb is not None and \
            self.config.reid_distance_threshold is not None else [None] * len(detections)
        high: list[Detection] = []
        low: list[Detection] = []
        low_cut = self.config.low_score_threshold
        for box, s, e in zip(detections.xyxy, score, embeddings):
            if s < self.config.score_threshold and (low_cut is None or s < low_cut):
                continue
            (high if s >= self.config.score_threshold else low).append(
                Detection(points=box.reshape(2, 2).astype(np.float64), scores=np.array([s, s]), label="object",
                          data=float(s), embedding=e))
        return high, low

    def update(self, detections: Detections | None, period: int = 1, rgb: np.ndarray | None = None) -> Tracks:
        """Advance one frame; returns the tracks that have an id (initialised) in this frame.

        ``detections``: xyxy pixels of the frame, or None on a frame the detector skipped.
        ``rgb``: the frame (H, W, 3 RGB uint8) the boxes are in, for the appearance embedding of
        ReID; without it, lost tracks are not re-identified.
        """
        high: list[Detection] = []
        low: list[Detection] = []
        if detections is None:
            objects = self.tracker.update(period=period)
        else:
            high, low = self._detections(detections, rgb)
            objects = self.tracker.update(detections=high, period=period, low_detections=low)
        current = {id(d) for d in high + low}
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
    """Keep the configured classes above the score threshold (the low one: CowTracker splits them)."""
    low = config.low_score_threshold
    detections = detections.above(config.score_threshold if low is None else min(low, config.score_threshold))
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
            tracks = self.tracker.update(dets, period=self.config.detect_every if dets is not None else 1, rgb=f.rgb)
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


# progress(stats, the annotated RGB frame just written, or None while no frame comes) -> keep going?
LiveProgress = Callable[[Any, "np.ndarray | None"], bool]


def track_stream(reader: Any, detector: Any, out_video: str | Path | FrameSink | None, out_mot: str | Path,
                 out_csv: str | Path | None = None, config: TrackConfig = TrackConfig(),
                 progress: LiveProgress | None = None, hooks: Sequence[FrameHook] = ()) -> TrackResult:
    """Track the cows of a live stream until it ends or ``progress`` says stop.

    The pipeline is :func:`track_video`'s (detect every k-th frame in batches → Norfair → draw →
    encode), fed by ``reader``; ``reader.stats`` gets each frame's latency (arrival from the stream →
    annotated frame handed to ``out_video``) as it is written.

    Args:
        reader: an open :class:`cowdetect.live.StreamReader` (closed on return).
        detector: a :class:`~cowdetect.DetectorBox` whose classes include ``config.classes``.
        out_video: a frame sink (:class:`cowdetect.video.SegmentWriter`), a path, or None to skip drawing.
        out_mot, out_csv: the tracks as in :func:`track_video` (boxes xyxy pixels); frame times in the
            CSV are seconds since the first frame arrived.
        progress: ``progress(reader.stats, annotated RGB frame or None)`` after every frame and about
            once a second while the stream is down; return False to stop.
        hooks: :class:`FrameHook` s (line and zone counters).

    Returns:
        :class:`TrackResult` (``stopped``: progress said stop; ``warning``: why the stream ended, when it did).
    """
    _check_classes(detector, config)
    stats = reader.stats

    def each_frame(done: int, total: int, drawn: np.ndarray) -> bool:
        stats.written(done - 1)  # frames leave the pipeline in order, one per frame read
        return progress is None or progress(stats, drawn)

    if progress is not None:
        reader.keep_going = lambda: progress(stats, None)
    pipeline = _Pipeline(detector, reader.info, out_video, out_mot, out_csv, config, each_frame, None, hooks)
    try:
        pipeline.feed(reader)
    finally:
        reader.close()
        pipeline.close()
    # the reader also ends when keep_going said stop while the stream was down
    pipeline.stopped = pipeline.stopped or reader.halted
    return pipeline.result(reader)
