"""Frames from a video: sample a stored video by time and store the frames as images to label.

:func:`import_video_frames` keeps one frame every ``every`` seconds (or ``count`` frames spread
evenly over the video), measured on each frame's own timestamp, so a variable-frame-rate
phone video is sampled by time, not by frame number. A frame that looks like the last one kept
(fewer than ``min_change`` of the 64 bits of their perceptual hashes differ) is skipped: a
cow standing still gives one image, not sixty. :func:`import_frames` imports chosen frame
indices, optionally with boxes (e.g. a tracker's) stored as the images' suggestions.

Frames are stored as JPEG (quality 95: a 4K frame is ~2 MB, not a 20 MB PNG), named
``<video name>#f000120.jpg``, and remember the video, frame index and timestamp they came
from; importing the same frames again adds nothing. Decoding streams (constant memory) and
converts to RGB only the frames that are wanted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from typing import Any, Callable, Mapping

from .data import check_boxes_inside
from .detections import Detections
from .images import hash_distance, perceptual_hash
from .store import ImageRecord, Store, VideoRecord, check_split
from .video import Frame, VideoInfo, VideoReader

# Frames 1/25 s apart differ by 0-4 of the 64 pHash bits on the demo video, 1 s apart by 8-18:
# at 5 a still scene gives one image and a moving one keeps every sample.
MIN_CHANGE_BITS = 5
DEFAULT_EVERY = 1.0   # seconds between frames when neither every nor count is given
HASH_BITS = 64

# progress(frames decoded, frames in the video (0: unknown)) -> keep going? (False stops)
Progress = Callable[[int, int], bool]


@dataclass(frozen=True)
class FrameImport:
    """What an import of video frames did.

    ``images`` are the ids of the frames kept, newly stored or already there, in frame order;
    ``skipped`` lists each frame left out (``{"frame": index, "reason": sentence}``);
    ``frames_read`` how many frames were decoded; ``suggested`` how many images got
    suggestions; ``warning`` says where a cut-off file ended; ``note`` how sampling was adapted.
    """

    video_id: int
    added: int
    images: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    frames_read: int = 0
    suggested: int = 0
    stopped: bool = False
    warning: str | None = None
    note: str | None = None

    def summary(self) -> str:
        """'Added 12 frames of video 3, skipped 2.' (and the note, warning or stop, when there is one)."""
        frames = f"{self.added} frame{'s' * (self.added != 1)}"
        text = f"Added {frames} of video {self.video_id}, skipped {len(self.skipped)}."
        extra = [t for t in (self.note, self.warning, "Stopped before the end." if self.stopped else None) if t]
        return " ".join([text, *extra])

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def check_settings(every: float | None = None, count: int | None = None, split: str = "unassigned",
                   min_change: int = MIN_CHANGE_BITS) -> None:
    """Check an import's settings before anything is decoded or stored.

    Raises:
        ValueError: ``every`` not a positive finite number of seconds, ``count`` not a positive
            whole number, both given, an unknown split, or ``min_change`` outside 0..64.
    """
    if every is not None and count is not None:
        raise ValueError(f"every / count: expected one of them (seconds between frames, or how many frames), "
                         f"got both (every={every}, count={count})")
    if every is not None and (isinstance(every, bool) or not isinstance(every, Real)
                              or not math.isfinite(every) or every <= 0):
        raise ValueError(f"every: expected a positive number of seconds between frames, got {every!r}")
    if count is not None and (isinstance(count, bool) or not isinstance(count, Integral) or count <= 0):
        raise ValueError(f"count: expected a positive whole number of frames, got {count!r}")
    if isinstance(min_change, bool) or not isinstance(min_change, Integral) or not 0 <= min_change <= HASH_BITS:
        raise ValueError(f"min_change: expected a whole number of hash bits from 0 (keep all) to {HASH_BITS}, "
                         f"got {min_change!r}")
    check_split(split)


def plan_sampling(info: VideoInfo, every: float | None = None, count: int | None = None
                  ) -> tuple[float, int | None, str | None]:
    """(seconds between frames, at most this many frames or None, a note or None) for a video.

    ``count`` frames are spread evenly: one every duration / count seconds from 0. When the
    duration is unknown it is taken from the header's frame count and rate; failing that,
    one frame a second (at most ``count``) and the note says so.
    """
    check_settings(every, count)
    if count is None:
        return float(every if every is not None else DEFAULT_EVERY), None, None
    duration = info.duration or (info.frames / info.fps if info.frames and info.fps else 0.0)
    if duration > 0:
        return duration / count, int(count), None
    return DEFAULT_EVERY, int(count), (f"The video's duration is unknown, so instead of {count} frames spread over "
                                       f"it, one frame every {DEFAULT_EVERY:g} s was taken (at most {count}).")


class _EverySampler:
    """The ``wanted`` predicate of a time sampling: the first frame at or after each multiple of
    ``every`` seconds (one frame when a stall skips several), at most ``limit`` frames."""

    def __init__(self, every: float, limit: int | None) -> None:
        self.every, self.limit, self.next, self.taken = every, limit, 0.0, 0

    def __call__(self, index: int, time: float) -> bool:
        if (self.limit is not None and self.taken >= self.limit) or time < self.next - 1e-6:
            return False
        self.taken += 1
        self.next = (math.floor(time / self.every + 1e-6) + 1) * self.every
        return True


class _Watched:
    """A ``wanted`` predicate that also reports progress for every decoded frame (on the decode
    thread), so a stop is seen within a second even when kept frames are minutes apart. When
    ``progress`` says stop, the next frame is delivered at once and :meth:`stops` tells the
    importing loop to end there."""

    def __init__(self, wanted: Callable[[int, float], bool], progress: Progress | None, total: int) -> None:
        self.wanted, self.progress, self.total = wanted, progress, total
        self.stop_at: int | None = None  # the frame index at which a stop was asked

    def __call__(self, index: int, time: float) -> bool:
        if self.stop_at is None and self.progress is not None and self.progress(index + 1, self.total) is False:
            self.stop_at = index
        return self.stop_at is not None or self.wanted(index, time)

    def stops(self, index: int) -> bool:
        """Whether the importing loop ends at this frame (frames decoded before the stop are kept)."""
        return self.stop_at is not None and index >= self.stop_at


class _Importer:
    """Stores frames of one video and keeps the tally (ids kept, skips and why, last kept hash)."""

    def __init__(self, store: Store, video: VideoRecord, split: str, min_change: int) -> None:
        self.store, self.video, self.split, self.min_change = store, video, split, min_change
        self.added, self.suggested = 0, 0
        self.images: list[int] = []
        self.skipped: list[dict[str, Any]] = []
        self.last: tuple[int, str] | None = None  # (frame index, pHash) of the last frame kept

    def skip(self, index: int, reason: str) -> None:
        self.skipped.append({"frame": int(index), "reason": reason})

    def take(self, frame: Frame, near_duplicates: bool = True) -> ImageRecord | None:
        """Store ``frame`` unless it is already stored or (``near_duplicates``) too like the last kept."""
        phash = perceptual_hash(frame.rgb)
        existing = self.store.frame_image(self.video.id, frame.index)
        if existing is not None:
            self.skip(frame.index, f"already imported as image {existing.id}")
            return self.keep(existing, frame.index, phash)
        if near_duplicates and self.last is not None and self.min_change:
            bits = hash_distance(self.last[1], phash)
            if bits < self.min_change:
                self.skip(frame.index, f"near-duplicate of frame {self.last[0]} ({bits} of {HASH_BITS} hash bits "
                                       f"differ, fewer than the minimum change of {self.min_change})")
                return None
        name = f"{self.video.original_name or f'video-{self.video.id}'}#f{frame.index:06d}.jpg"
        record, created = self.store.add_image(frame.rgb, name=name, split=self.split, array_format="JPEG",
                                               phash=phash, frame=(self.video.id, frame.index, frame.time))
        if created:
            self.added += 1
        else:  # the very same bytes came in before, from another video or as a photo
            self.skip(frame.index, f"the same picture is already stored as image {record.id}")
        return self.keep(record, frame.index, phash)

    def keep(self, record: ImageRecord, index: int, phash: str) -> ImageRecord:
        self.images.append(record.id)
        self.last = (index, phash)
        return record

    def result(self, reader: VideoReader, stopped: bool, note: str | None = None) -> FrameImport:
        if reader.frames_read == 0 and not stopped:
            raise ValueError(f"video {self.video.id}: no frame could be decoded ({reader.error or 'empty'})")
        return FrameImport(self.video.id, self.added, self.images, self.skipped, reader.frames_read,
                           self.suggested, stopped, None if stopped else reader.error, note)


def import_video_frames(store: Store, video_id: int, every: float | None = None, count: int | None = None,
                        split: str = "unassigned", min_change: int = MIN_CHANGE_BITS,
                        progress: Progress | None = None) -> FrameImport:
    """Store frames of a stored video as unlabeled images of ``split``, sampled by time.

    Args:
        store: the data folder; ``video_id`` one of its videos (see ``cowdetect.jobs.add_video``).
        every: keep the first frame at or after each multiple of this many seconds (by each
            frame's own timestamp). Default: one a second.
        count: instead, look at this many frames spread evenly over the video's duration (near-
            duplicates among them are skipped, so fewer may be stored).
        split: the split the new images go to.
        min_change: skip a frame whose 64-bit perceptual hash differs from the last kept
            frame's in fewer bits than this (0 keeps every sampled frame).
        progress: ``progress(frames decoded, frames in the video or 0)`` after each decoded
            frame; return False to stop (what was stored stays).

    Returns:
        :class:`FrameImport`. A file cut off mid-stream keeps the frames before the cut and
        ``warning`` says where it ended. Frames already imported are listed, not stored again.

    Raises:
        ValueError: bad settings (:func:`check_settings`), an unknown video id, or a file that
            is not a video or has no frame; nothing is stored then.
    """
    check_settings(every, count, split, min_change)
    video = store.video(video_id)
    sampler = _EverySampler(DEFAULT_EVERY, None)
    watched = _Watched(sampler, progress, 0)
    reader = VideoReader(video.path, wanted=watched)  # probes the file once; decoding starts with the loop
    sampler.every, sampler.limit, note = plan_sampling(reader.info, every, count)
    watched.total, limit = reader.info.frames, sampler.limit
    importer, stopped, kept = _Importer(store, video, split, min_change), False, 0
    try:
        for frame in reader:
            if watched.stops(frame.index):
                stopped = True
                break
            importer.take(frame)
            kept += 1
            if limit is not None and kept >= limit:
                break
    finally:
        reader.close()  # also when storing fails: the decode thread must not wait on a full queue
    return importer.result(reader, stopped, note)


def _check_wanted(frames: Mapping[int, Detections | None], info: VideoInfo, source: str | None,
                  video_id: int) -> None:
    if not frames:
        raise ValueError("frames: expected at least one frame index, got none")
    for index, boxes in frames.items():
        if isinstance(index, bool) or not isinstance(index, Integral) or index < 0:
            raise ValueError(f"frames: expected frame indices counted from 0, got {index!r}")
        if info.frames and index >= info.frames:
            raise ValueError(f"frames: frame {index} is past the end of video {video_id} "
                             f"(frames 0 to {info.frames - 1})")
        if boxes is not None:
            if not isinstance(boxes, Detections):
                raise ValueError(f"frames: expected Detections or None for frame {index}, got {type(boxes).__name__}")
            check_boxes_inside(boxes.xyxy, info.width, info.height, f"frames: frame {index}")
    if not source and any(b is not None for b in frames.values()):
        raise ValueError("source: expected what made the boxes (e.g. 'tracker, run 12'), got none")


def _suggest(store: Store, importer: _Importer, record: ImageRecord, index: int, boxes: Detections, source: str,
             run_id: int | None) -> None:
    """Store ``boxes`` as the image's suggestions, unless it is labeled (its ground truth wins)."""
    if not record.labeled:
        store.set_suggestions(record.id, boxes, source, run_id=run_id)
        importer.suggested += 1
    elif importer.skipped and importer.skipped[-1]["frame"] == index:  # a labeled image is always a stored one
        importer.skipped[-1]["reason"] += " (labeled: its boxes stay, no suggestions set)"


def import_frames(store: Store, video_id: int, frames: Mapping[int, Detections | None], source: str | None = None,
                  run_id: int | None = None, split: str = "unassigned", progress: Progress | None = None
                  ) -> FrameImport:
    """Store chosen frames of a stored video, each with its boxes as suggestions when given.

    Args:
        frames: frame index (from 0) → the boxes to suggest on it (:class:`Detections`, xyxy
            pixels of the upright frame as :class:`~cowdetect.video.VideoReader` yields it, with
            scores), or None for none. The video is decoded once, up to the last index.
        source: what made the boxes ('tracker, run 12'); needed when any are given.
        run_id: the run that made them, recorded with the suggestions.
        split: the split the new images go to.
        progress: ``progress(frames decoded, last wanted index + 1)`` after each decoded frame
            (on the decoding thread); return False to stop (what was stored stays, ``stopped``).

    Frames already imported are reused (listed in ``skipped`` with their image id, and kept in
    ``images``); their suggestions are replaced unless the image is labeled. Near-duplicates
    are not skipped: these frames were chosen.

    Raises:
        ValueError: no frames, a negative index or one past the end, boxes outside the frame,
            boxes without a source, an unknown split or video; nothing is stored then.
    """
    check_split(split)
    video = store.video(video_id)
    watched = _Watched(lambda index, _time: index in frames, progress, 0)
    reader = VideoReader(video.path, wanted=watched)
    try:
        _check_wanted(frames, reader.info, source, video.id)
    except ValueError:
        reader.close()
        raise
    watched.total = max(frames) + 1
    importer, last, seen, stopped = _Importer(store, video, split, 0), max(frames), set(), False
    try:
        for frame in reader:
            if watched.stops(frame.index):
                stopped = True
                break
            seen.add(frame.index)
            record = importer.take(frame, near_duplicates=False)
            boxes = frames[frame.index]
            if record is not None and boxes is not None:
                _suggest(store, importer, record, frame.index, boxes, str(source), run_id)
            if frame.index >= last:
                break
    finally:
        reader.close()
    if not stopped:  # a stop leaves the frames after it untried, not missing
        ended = reader.error or f"the video has {reader.frames_read} frames"
        for index in sorted(set(frames) - seen):
            importer.skip(index, f"not in the video ({ended})")
    return importer.result(reader, stopped)
