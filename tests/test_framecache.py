"""Kept per-frame detections: the file format, a write cut off by a kill, and tracking runs that
reuse them (a resumed run, and a second run with other tracker settings)."""

from __future__ import annotations

import numpy as np

from conftest import RecordingDetector
from cowdetect import DetectorBox, jobs
from cowdetect.config import TrackConfig
from cowdetect.demo import render_video
from cowdetect.detections import Detections
from cowdetect.models import resolve
from cowdetect.framecache import FrameDetections
from cowdetect.tracking import track_video
from cowdetect.video import write_video

COCO3 = ("__background__", "person", "cow")


def dets(n: int, seed: int) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    return Detections(np.hstack([xy, xy + rng.uniform(1, 50, (n, 2)).astype(np.float32)]),
                      rng.integers(1, 3, n), rng.uniform(0, 1, n).astype(np.float32), COCO3)


def same(a: Detections, b: Detections) -> bool:
    return np.array_equal(a.xyxy, b.xyxy) and np.array_equal(a.class_id, b.class_id) \
        and np.array_equal(a.score, b.score) and a.class_names == b.class_names


def test_round_trip_in_any_order(tmp_path):
    path = tmp_path / "cache" / "v.f32"
    with FrameDetections(path, COCO3) as cache:
        for index, n in ((6, 3), (0, 0), (3, 5), (12345, 1)):
            cache.put(index, dets(n, index))
        cache.put(6, dets(9, 99))  # a frame is kept once: the first detections stay
    again = FrameDetections(path, COCO3)
    assert len(again) == 4 and again.get(1) is None and len(again.get(0)) == 0
    for index, n in ((6, 3), (3, 5), (12345, 1)):
        assert same(again.get(index), dets(n, index))


def test_a_write_cut_off_by_a_kill_loses_only_that_frame(tmp_path):
    path = tmp_path / "v.f32"
    with FrameDetections(path, COCO3) as cache:
        cache.put(0, dets(2, 0))
        cache.put(3, dets(4, 3))
    whole = path.read_bytes()
    path.write_bytes(whole[:-30])  # the last frame's rows half written, no end marker
    cache = FrameDetections(path, COCO3)
    assert len(cache) == 1 and same(cache.get(0), dets(2, 0)) and cache.get(3) is None
    cache.put(3, dets(4, 3))  # detected again and appended after the cut
    cache.close()
    assert len(FrameDetections(path, COCO3)) == 2 and path.stat().st_size == len(whole)


def test_another_vocabulary_is_not_read(tmp_path):
    path = tmp_path / "v.f32"
    with FrameDetections(path, COCO3) as cache:
        cache.put(0, Detections([[1, 2, 3, 4], [5, 6, 7, 8]], [2, 1], [0.9, 0.8], COCO3))
    assert FrameDetections(path, ("__background__", "cow")).get(0) is None  # class id 2 means nothing there


def test_tracking_reuses_kept_detections_with_other_tracker_settings(tmp_path, tiny):
    video = tmp_path / "cows.mp4"
    write_video((frame for frame, _ in render_video(1, 160, 96, 10, 2.0)), video, fps=10)
    cache_path = tmp_path / "kept.f32"
    base = dict(score_threshold=0.0, detect_every=2, batch_size=3)
    first = RecordingDetector(tiny)
    with FrameDetections(cache_path, tiny.class_names) as cache:
        result = track_video(video, first, None, tmp_path / "a.txt", config=TrackConfig(**base), cache=cache)
    assert len(first.sizes) == 10 and result.reused_frames == 0 and len(FrameDetections(cache_path, COCO3)) == 10

    other = TrackConfig(**base, distance="centroid", hit_counter_max=5, initialization_delay=1)
    second = RecordingDetector(tiny)
    with FrameDetections(cache_path, tiny.class_names) as cache:
        kept = track_video(video, second, None, tmp_path / "b.txt", config=other, cache=cache)
    fresh = track_video(video, tiny, None, tmp_path / "c.txt", config=other)
    assert len(second.sizes) == 0 and kept.reused_frames == kept.detected_frames == 10 and kept.num_tracks == fresh.num_tracks
    # the same tracks as a run that detects every frame itself
    assert (tmp_path / "b.txt").read_text() == (tmp_path / "c.txt").read_text() != ""


def test_tracking_jobs_resume_and_retrack_without_detecting_again(video_store, tmp_path):
    video = video_store.videos()[0]
    settings = jobs.tracking_settings(video_store, video.id, model="tiny", score_threshold=0.05,
                                      detect_every=1, batch_size=2)
    ref = resolve(video_store, settings["model"])
    box = DetectorBox.open(ref, "cpu")
    # what a run stopped (or killed) after 8 frames leaves behind
    with jobs.detection_cache(video_store, video, box, ref, 1280) as cache:
        stopped = track_video(video.path, box, None, tmp_path / "stopped.txt", config=TrackConfig(
            score_threshold=0.05, detect_every=1, batch_size=2), progress=lambda done, total, frame: done < 8,
            cache=cache)
    assert stopped.stopped and stopped.frames == 8

    messages = []
    run = jobs.run_tracking(video_store, jobs.create_tracking_run(video_store, settings), log=messages.append)
    summary = run.metrics["summary"]
    assert run.status == "done" and summary["frames"] == 20 and summary["reused_frames"] == 8
    assert any("8 frames already detected" in m for m in messages)

    # the same model on the same video with other tracker settings: no frame is detected again
    other = jobs.tracking_settings(video_store, video.id, model="tiny", score_threshold=0.3, detect_every=1,
                                   batch_size=2, distance="centroid", hit_counter_max=10)
    run = jobs.run_tracking(video_store, jobs.create_tracking_run(video_store, other), log=lambda m: None)
    summary = run.metrics["summary"]
    assert summary["reused_frames"] == summary["detected_frames"] == 20 and summary["detector_seconds"] == 0
