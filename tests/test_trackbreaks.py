"""Where tracking broke: the analysis on hand-made track tables, and the tracking run's list,
thumbnails and import with the tracker's boxes as suggestions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cowdetect import jobs
from cowdetect.jobs.tolabel import frames_to_label_of, import_run_frames
from conftest import run_with_switch
from cowdetect.mot import id_switches, read_mot
from cowdetect.trackbreaks import BreakConfig, frames_to_label

W, H, FPS, FRAMES = 200, 100, 10.0, 60


def track(track_id: int, first: int, last: int, x: float, y: float = 40, missed: tuple[int, ...] = (),
          dx: float = 0.0) -> list[dict]:
    """Rows of one track from frame ``first`` to ``last`` (from 1), a 20x10 box moving ``dx`` px a frame."""
    return [{"frame": f, "time_s": (f - 1) / FPS, "id": track_id, "x1": x + dx * (f - first), "y1": y,
             "x2": x + 20 + dx * (f - first), "y2": y + 10, "score": 0.9, "detected": int(f not in missed)}
            for f in range(first, last + 1)]


def table(*tracks: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for t in tracks for row in t])


def kinds(found) -> list[tuple[int, str]]:
    return [(f.frame, f.kind) for f in found]


@pytest.mark.parametrize("tracks, switches, expected", [
    # a cow walking in from the left edge and out at the right, detected throughout: nothing to label
    (table(track(1, 1, FRAMES, 0, dx=3)), None, []),
    # the detector missed it for 5 frames (detect_every 1): the middle of that gap
    (table(track(1, 1, FRAMES, 0, dx=3, missed=(20, 21, 22, 23, 24))), None, [(21, "missed")]),
    # two misses in a row is not yet a gap (missed_min 3)
    (table(track(1, 1, FRAMES, 0, dx=3, missed=(20, 21))), None, []),
    # a track of 0.5 s in the middle of the video, born and lost mid-picture: one frame, the short track ranks first
    (table(track(1, 1, FRAMES, 0, dx=3), track(2, 30, 34, 90)), None, [(31, "short_track")]),
    # a long track that appears from nowhere and vanishes mid-picture: two frames, far apart
    (table(track(1, 1, FRAMES, 0, dx=3), track(2, 10, 50, 90)), None, [(9, "born_inside"), (49, "lost_inside")]),
    # tracks cut by the video's start or end are not short, and not born (lost) where the video cuts them
    (table(track(1, 1, 3, 90), track(2, FRAMES - 2, FRAMES, 90)), None, [(2, "lost_inside"), (57, "born_inside")]),
    # a switch from ground truth, and a miss 0.2 s later: one frame, the switch's kind, both reasons
    (table(track(1, 1, FRAMES, 0, dx=3, missed=(41, 42, 43))), [(40, 7, 1, 2)], [(39, "id_switch")]),
])
def test_frames_to_label(tracks, switches, expected):
    found = frames_to_label(tracks, W, H, FPS, FRAMES, 1, switches)
    assert kinds(found) == expected


def test_merged_reasons_and_cap():
    tracks = table(track(1, 1, FRAMES, 0, dx=3, missed=(41, 42, 43)))
    (only,) = frames_to_label(tracks, W, H, FPS, FRAMES, 1, [(40, 7, 1, 2)])
    assert only.reason.startswith("identity switch: cow 7 went from track 1 to track 2; track 1 kept alive 0.3 s")
    assert only.track_ids == (2, 1) and only.time == pytest.approx(3.9)
    many = [(f, 1, 1, 2) for f in range(2, FRAMES, 6)]  # ten switches 0.6 s apart
    capped = frames_to_label(pd.DataFrame(), W, H, FPS, FRAMES, 1, many, BreakConfig(max_frames=4))
    assert kinds(capped) == [(1, "id_switch"), (7, "id_switch"), (13, "id_switch"), (19, "id_switch")]


def test_frames_between_detections_are_not_misses():
    # detect_every 3: frames 2, 3, 5, 6, ... have no detection by design
    rows = track(1, 1, FRAMES, 0, dx=3, missed=tuple(f for f in range(1, FRAMES + 1) if (f - 1) % 3))
    assert frames_to_label(table(rows), W, H, FPS, FRAMES, 3) == []
    gap = track(1, 1, FRAMES, 0, dx=3, missed=tuple(f for f in range(1, FRAMES + 1) if (f - 1) % 3 or 28 <= f <= 37))
    assert kinds(frames_to_label(table(gap), W, H, FPS, FRAMES, 3)) == [(31, "missed")]


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="positive size and frame rate"):
        frames_to_label(pd.DataFrame(), W, H, 0.0, FRAMES)


def mot(rows: list[tuple[int, int, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"frame": f, "id": i, "x": x, "y": 10.0, "w": 20.0, "h": 10.0, "conf": 1.0}
                         for f, i, x in rows])


def test_id_switches_from_ground_truth():
    truth = mot([(f, 7, 5.0 * f) for f in range(1, 11)])
    tracks = mot([(f, 1 if f < 6 else 2, 5.0 * f) for f in range(1, 11)])
    assert id_switches(truth, tracks) == [(6, 7, 1, 2)]
    assert id_switches(truth, truth) == []


def test_run_frames_import_with_tracker_suggestions(video_store):
    """A run whose tracks came out of the demo video's own ground truth with one identity switch
    (frame 11 on): the switch is found, its thumbnail drawn, and the frame added with the tracker's boxes."""
    video = video_store.videos()[0]
    run_id, rows = run_with_switch(video_store)
    found = frames_to_label_of(video_store, run_id)
    switch = [f for f in found if f["kind"] == "id_switch"]
    assert [f["frame"] for f in switch] == [10]
    assert all(f["thumbnail"] is not None and f["thumbnail"].is_file() for f in found)

    result = import_run_frames(video_store, run_id, [10])
    assert result.added == 1
    (image,) = [video_store.image(i) for i in result.images]
    assert (image.video_id, image.frame_index) == (video.id, 10)
    suggested = video_store.suggestions(image.id)
    expected = rows[rows["frame"] == 11][["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
    assert suggested.source == f"tracker, run {run_id}" and suggested.run_id == run_id
    np.testing.assert_allclose(suggested.boxes.xyxy, expected, atol=0.01)
    assert len(video_store.boxes(image.id)) == 0  # suggestions, not ground truth
    assert import_run_frames(video_store, run_id, [10]).added == 0  # the same frame twice adds nothing


def test_tracking_run_lists_frames_to_label(video_store):
    video = video_store.videos()[0]
    run_id = jobs.create_tracking_run(video_store, jobs.tracking_settings(video_store, video.id, model="tiny",
                                                                          score_threshold=0.05))
    run = jobs.run_tracking(video_store, run_id, log=lambda m: None)
    assert run.status == "done"
    assert isinstance(run.metrics["to_label"], list)
    assert all(0 <= f["frame"] < video.frames and f["reason"] for f in run.metrics["to_label"])
    with pytest.raises(ValueError, match="not a tracking run"):
        frames_to_label_of(video_store, jobs.create_run(video_store, "evaluate", {"device": "cpu"}, 1))


def test_a_perfect_detector_breaks_nothing(video_store):
    """Norfair fed the demo video's true boxes: cows present from the first frame show up a few
    frames in (initialization_delay) and are kept a while after they leave (hit_counter_max) —
    neither is a break, so nothing is worth labeling."""
    from cowdetect.config import TrackConfig
    from cowdetect.detections import Detections
    from cowdetect.tracking import CowTracker

    video = video_store.videos()[0]
    truth = read_mot(video.gt_path)
    truth = truth[truth["conf"] != 0]
    config = TrackConfig(detect_every=1)
    tracker, rows = CowTracker(config), []
    for frame in range(1, int(video.frames) + 1):
        now = truth[truth["frame"] == frame]
        xyxy = np.stack([now["x"], now["y"], now["x"] + now["w"], now["y"] + now["h"]], 1).astype(np.float32)
        dets = Detections.from_names(xyxy.reshape(-1, 4), ["cow"] * len(now), ("__background__", "cow"),
                                     score=np.full(len(now), 0.9, np.float32))
        tracks = tracker.update(dets)
        rows += [{"frame": frame, "time_s": (frame - 1) / video.fps, "id": int(i), "x1": b[0], "y1": b[1],
                  "x2": b[2], "y2": b[3], "score": 0.9, "detected": int(hit)}
                 for i, b, hit in zip(tracks.ids, tracks.xyxy, tracks.detected)]
    assert len(pd.DataFrame(rows)["id"].unique()) == truth["id"].nunique()  # every cow was tracked
    assert frames_to_label(pd.DataFrame(rows), video.width, video.height, video.fps, int(video.frames), 1, None,
                           initialization_delay=config.initialization_delay) == []
