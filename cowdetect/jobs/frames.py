"""The frame-import job: frames of a stored video become unlabeled images in a worker process (a
long 4K video takes minutes), with progress, Stop and resume.

:func:`frames_settings` checks a request before any work, :func:`create_frames_run` queues it and
:func:`run_frames` does it: frames sampled by time (:func:`cowdetect.frames.import_video_frames`),
or chosen frames — those a tracking run found worth labeling, with the tracker's boxes as
suggestions, or any list of indexes (:func:`cowdetect.frames.import_frames`). A resumed run
simply imports again: frames already stored are reused, never stored twice, so it goes on where
it stopped. :func:`frame_import_of` reads a run's result back as a
:class:`cowdetect.frames.FrameImport`.
"""

from __future__ import annotations

from dataclasses import fields
from numbers import Integral
from typing import Any, Sequence

from ..frames import MIN_CHANGE_BITS, FrameImport, Progress, check_settings, import_frames, import_video_frames
from ..store import RunRecord, Store, VideoRecord, now
from .machinery import Log, Ticker, create_run, recorded, start, stderr_log
from .tolabel import frames_to_label_of, import_run_frames

# Decoding and storing frames needs no accelerator. ``start`` waits until no other live run is
# ``running`` on the same device name (``Store.claim_device``), so under "cpu" or "cuda" an import
# would queue behind a training run for hours; under its own name it waits only for another
# import (two long decodes at once would just halve each other's speed).
DEVICE = "io"


def _frame_list(frames: Sequence[int], video: VideoRecord) -> list[int]:
    """``frames`` as sorted distinct indexes, each checked to be a frame of ``video``."""
    if isinstance(frames, (str, bytes)) or not isinstance(frames, Sequence) or not frames:
        raise ValueError(f"frames: expected a non-empty list of frame indexes counted from 0, got {frames!r}")
    for index in frames:
        if isinstance(index, bool) or not isinstance(index, Integral) or index < 0:
            raise ValueError(f"frames: expected frame indexes counted from 0, got {index!r}")
        if video.frames and index >= video.frames:
            raise ValueError(f"frames: frame {index} is past the end of video {video.id} "
                             f"(frames 0 to {video.frames - 1})")
    return sorted({int(i) for i in frames})


def frames_settings(store: Store, video_id: int, every: float | None = None, count: int | None = None,
                    split: str = "unassigned", min_change: int = MIN_CHANGE_BITS, from_run: int | None = None,
                    frames: Sequence[int] | None = None) -> dict[str, Any]:
    """Check and complete a frame import of stored video ``video_id`` before any work.

    Either sampled by time (``every`` seconds, or ``count`` frames spread evenly; near-duplicates
    under ``min_change`` hash bits skipped: :func:`cowdetect.frames.import_video_frames`), or
    chosen: ``frames`` (indexes from 0) and/or ``from_run``, a finished tracking run of this video
    whose boxes become the frames' suggestions (default frames: those it found worth labeling).

    Raises:
        ValueError: bad sampling settings (:func:`cowdetect.frames.check_settings`), an unknown
            video, sampling settings together with chosen frames, a run that is not a finished
            tracking run of this video or found no frame, or a frame index that is not in the video.
    """
    check_settings(every, count, split, min_change)
    video = store.video(video_id)
    settings = {"video_id": video.id, "video_name": video.original_name, "every": every, "count": count,
                "split": split, "min_change": int(min_change), "from_run": None, "frames": None, "device": DEVICE}
    if from_run is None and frames is None:
        return settings
    if every is not None or count is not None or min_change != MIN_CHANGE_BITS:
        raise ValueError(f"every / count / min_change: only for sampling; chosen frames are taken as they are, "
                         f"got every={every!r}, count={count!r}, min_change={min_change!r}")
    if from_run is not None:
        found = frames_to_label_of(store, from_run)  # refuses a run that is not a finished tracking run
        tracked = store.run(from_run).params["video_id"]
        if tracked != video.id:
            raise ValueError(f"from_run: run {from_run} tracked video {tracked}, not video {video.id}")
        if frames is None:
            frames = [f["frame"] for f in found]
            if not frames:
                raise ValueError(f"run {from_run}: no frames to add (it found none worth labeling)")
    return {**settings, "every": None, "count": None, "from_run": from_run, "frames": _frame_list(frames, video)}


def create_frames_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a frame import with checked ``settings`` (see :func:`frames_settings`); returns its id.
    Its progress counts frames decoded: of the whole video, or up to the last chosen frame."""
    total = settings["frames"][-1] + 1 if settings["frames"] else store.video(settings["video_id"]).frames or 0
    return create_run(store, "frames", settings, total)


def frame_import_of(run: RunRecord) -> FrameImport:
    """What frame-import run ``run`` did so far, read from its metrics (nothing yet: 0 added)."""
    known = {f.name for f in fields(FrameImport)}
    return FrameImport(**{"video_id": run.params["video_id"], "added": 0,
                          **{k: v for k, v in run.metrics.items() if k in known}})


def _import(store: Store, settings: dict[str, Any], progress: Progress) -> FrameImport:
    """One pass of the import ``settings`` describe; ``progress(done, total) -> keep going?``."""
    if settings["frames"] is None:
        return import_video_frames(store, settings["video_id"], settings["every"], settings["count"],
                                   settings["split"], settings["min_change"], progress=progress)
    run_id = settings["from_run"]
    if run_id is None:
        return import_frames(store, settings["video_id"], dict.fromkeys(settings["frames"]),
                             split=settings["split"], progress=progress)
    return import_run_frames(store, run_id, settings["frames"], settings["split"], progress)


def _metrics(store: Store, after_image: int, result: FrameImport) -> dict[str, Any]:
    """The run's metrics after a pass: ``result.as_dict()``, with ``added`` counted from the store
    (so a pass killed before it could write its counts is still counted) and the frames this run
    stored in an earlier pass not listed again as "already imported"."""
    # imports of one video never run at once (see DEVICE): the newer frames are this run's
    mine = store.frames_added_since(result.video_id, after_image)
    skipped = [s for s in result.skipped if not (s["frame"] in mine and s["reason"].startswith("already imported"))]
    return {**result.as_dict(), "added": len(mine), "skipped": skipped, "after_image": after_image}


def run_frames(store: Store, run_id: int, log: Log | None = None) -> RunRecord:
    """Run frame-import run ``run_id``: decode the video, store the frames (progress about once a
    second, Stop honoured between frames), and keep :meth:`FrameImport.as_dict` in the run's
    metrics (``added``, ``skipped``, ``images``, ``video_id``, …). Ends ``done`` or ``stopped``."""
    log = log or stderr_log
    run = start(store, run_id, "frames", log)
    if run.status == "stopped":
        return run
    settings = run.params
    with recorded(store, run_id):
        what = f"{len(settings['frames'])} chosen frames" if settings["frames"] else "frames"
        log(f"run {run_id}: importing {what} of video {settings['video_id']} ({settings['video_name']})")
        after_image = run.metrics.get("after_image")
        if after_image is None:  # the first pass: images newer than this one are this run's
            after_image = store.last_image_id()
            store.update_run(run_id, metrics={"after_image": after_image})
        ticker = Ticker(store, run_id)
        result = _import(store, settings, ticker.poll)
        metrics = _metrics(store, after_image, result)
        if result.stopped:
            store.update_run(run_id, status="stopped", iteration=result.frames_read, metrics=metrics,
                             finished_at=now(), error=f"stopped after {result.frames_read} frames; resume to go on")
        else:
            store.update_run(run_id, status="done", iteration=result.frames_read, total=result.frames_read,
                             metrics=metrics, finished_at=now())
        log(f"run {run_id}: {frame_import_of(store.run(run_id)).summary()}")
        return store.run(run_id)
