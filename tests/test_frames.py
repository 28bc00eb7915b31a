"""Frames from a video (cowdetect.frames) on the demo video and tiny synthetic ones: sampling by each
frame's own time, count spread evenly, near-duplicates skipped with reasons, re-import adds
nothing, cut-off files, chosen frames with suggestions, and every bad input refused with nothing stored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cowdetect.demo import make_demo_video
from cowdetect.detections import Detections
from cowdetect.frames import MIN_CHANGE_BITS, FrameImport, import_frames, import_video_frames, plan_sampling
from cowdetect.jobs import add_video
from cowdetect.video import VideoInfo, VideoReader, write_video
from test_video import _write_raw


def noise(i: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """A frame of random pixels: every one looks unlike the others."""
    return np.random.default_rng(i).integers(0, 255, (*size, 3), dtype=np.uint8)


def stored(store, path, name=None) -> int:
    """Store a video file as the CLI and the page do; its id."""
    record, _ = add_video(store, path.read_bytes(), name or path.name)
    return record.id


def files(store) -> list[str]:
    return sorted(p.name for p in (store.data_dir / "images").rglob("*") if p.is_file())


@pytest.fixture
def demo(store) -> int:
    """The demo video (cows walking), 2 s of 160x96 at 10 fps, stored; its id."""
    return make_demo_video(store, seconds=2.0, fps=10, size=(160, 96))


def test_every_samples_by_each_frames_timestamp_on_a_variable_frame_rate_video(store, tmp_path):
    pts = [0, 40, 80, 120, 1000, 1040, 2500, 2540, 3100]  # ms: 25 fps, stalls, a gap over 2 s
    _write_raw(tmp_path / "vfr.mkv", [noise(i) for i in range(len(pts))], fps=25, pts=pts, time_base=(1, 1000))
    result = import_video_frames(store, stored(store, tmp_path / "vfr.mkv"), every=1.0, min_change=0)
    records = store.images()
    # the first frame at or after 0, 1, 2 (none until 2.5: one frame for that gap) and 3 s, not every 25th frame
    assert [r.frame_index for r in records] == [0, 4, 6, 8]
    assert [r.frame_time for r in records] == pytest.approx([0.0, 1.0, 2.5, 3.1], abs=0.002)
    assert result.added == 4 and result.images == [r.id for r in records] and result.skipped == []
    assert result.frames_read == 9 and result.warning is None


def test_count_spreads_frames_evenly_and_images_remember_their_frame(store, demo):
    result = import_video_frames(store, demo, count=4, split="train", min_change=0)
    records = store.images()
    assert result.added == 4 and result.frames_read <= 16  # stops decoding after the 4th frame
    assert [(r.video_id, r.frame_index) for r in records] == [(demo, 0), (demo, 5), (demo, 10), (demo, 15)]
    assert [r.frame_time for r in records] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert [r.original_name for r in records] == [f"demo-cows.mp4#f{i:06d}.jpg" for i in (0, 5, 10, 15)]
    assert all(r.split == "train" and r.path.suffix == ".jpg" and (r.width, r.height) == (160, 96)
               and r.phash for r in records)
    assert records[1].source_text == f"video {demo}, frame 5 at 0.50 s"


def test_default_is_one_frame_a_second(store, demo):
    result = import_video_frames(store, demo, min_change=0)
    assert [store.image(i).frame_index for i in result.images] == [0, 10]


def test_near_duplicates_of_the_last_kept_frame_are_skipped_with_reasons(store, tmp_path):
    still = noise(0)
    write_video([still] * 12 + [noise(1)] * 8, tmp_path / "still.mp4", fps=10)  # 1.2 s still, then a change
    result = import_video_frames(store, stored(store, tmp_path / "still.mp4"), every=0.3)
    assert [store.image(i).frame_index for i in result.images] == [0, 12]
    assert [s["frame"] for s in result.skipped] == [3, 6, 9, 15, 18]
    assert result.skipped[0]["reason"] == ("near-duplicate of frame 0 (0 of 64 hash bits differ, fewer than the "
                                           f"minimum change of {MIN_CHANGE_BITS})")
    assert result.skipped[-1]["reason"].startswith("near-duplicate of frame 12 (")
    assert result.added == 2 == store.count_images()


def test_min_change_zero_keeps_every_sampled_frame(store, demo):
    result = import_video_frames(store, demo, every=0.2, min_change=0)
    assert result.added == 10 and not result.skipped


def test_importing_the_same_video_twice_adds_nothing(store, demo):
    first = import_video_frames(store, demo, every=0.5)
    names = files(store)
    again = import_video_frames(store, demo, every=0.5)
    assert first.added == 4 and again.added == 0 and again.images == first.images
    assert again.skipped == [{"frame": store.image(i).frame_index, "reason": f"already imported as image {i}"}
                             for i in first.images]
    assert files(store) == names and store.count_images() == 4


def test_rotated_phone_video_is_stored_upright(store, tmp_path):
    _write_raw(tmp_path / "rot.mp4", [noise(i, (64, 96)) for i in range(3)], rotation=90)
    import_video_frames(store, stored(store, tmp_path / "rot.mp4"), count=1)
    assert [(r.width, r.height) for r in store.images()] == [(64, 96)]


def test_cut_off_file_keeps_the_frames_before_the_cut_and_says_where(store, tmp_path):
    write_video([noise(i, (64, 64)) for i in range(40)], tmp_path / "full.mp4", fps=10)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    result = import_video_frames(store, stored(store, tmp_path / "cut.mp4"), every=0.5, min_change=0)
    indices = [store.image(i).frame_index for i in result.images]
    assert 0 < result.frames_read < 40 and result.added == len(indices) > 0
    assert indices == list(range(0, result.frames_read, 5))
    assert f"frame {result.frames_read}" in result.warning and result.warning in result.summary()


def test_progress_reports_and_can_stop(store, demo):
    calls = []

    def progress(done: int, total: int) -> bool:  # called for every decoded frame, kept or not
        calls.append((done, total))
        return done < 8

    result = import_video_frames(store, demo, every=0.5, min_change=0, progress=progress)
    assert calls == [(i, 20) for i in range(1, 9)]
    assert result.stopped and result.added == 2 and "Stopped" in result.summary()  # frames 0 and 5 (10 fps)
    assert set(result.as_dict()) >= {"video_id", "added", "images", "skipped", "warning"}


def test_reader_converts_only_wanted_frames_and_counts_all(tmp_path):
    write_video([noise(i) for i in range(10)], tmp_path / "v.mp4", fps=10)
    asked = []
    reader = VideoReader(tmp_path / "v.mp4", wanted=lambda i, t: asked.append((i, t)) or i % 4 == 0)
    frames = list(reader)
    assert [f.index for f in frames] == [0, 4, 8] and all(f.rgb.shape == (48, 64, 3) for f in frames)
    assert asked == [(i, pytest.approx(i / 10)) for i in range(10)]
    assert reader.frames_read == 10 and reader.error is None


@pytest.mark.parametrize("info, every, count, expected", [
    (VideoInfo(64, 48, 25.0, 100, 4.0, 0, "h264"), None, None, (1.0, None, None)),
    (VideoInfo(64, 48, 25.0, 100, 4.0, 0, "h264"), 0.5, None, (0.5, None, None)),
    (VideoInfo(64, 48, 25.0, 100, 4.0, 0, "h264"), None, 8, (0.5, 8, None)),
    (VideoInfo(64, 48, 25.0, 100, 0.0, 0, "h264"), None, 8, (0.5, 8, None)),  # duration from frames / fps
    (VideoInfo(64, 48, 0.0, 0, 0.0, 0, "h264"), None, 8, (1.0, 8, "duration is unknown")),
])
def test_sampling_plan(info, every, count, expected):
    seconds, limit, note = plan_sampling(info, every, count)
    assert (seconds, limit) == expected[:2]
    assert note is None if expected[2] is None else expected[2] in note


BAD = [
    (dict(every=0), "every: expected a positive number"),
    (dict(every=-1.5), "every: expected a positive number"),
    (dict(every=math.nan), "every: expected a positive number"),
    (dict(every=math.inf), "every: expected a positive number"),
    (dict(count=0), "count: expected a positive whole number"),
    (dict(count=-2), "count: expected a positive whole number"),
    (dict(count=2.5), "count: expected a positive whole number"),
    (dict(every=1.0, count=3), "got both"),
    (dict(split="holdout"), "split: expected one of"),
    (dict(min_change=-1), "min_change: expected"),
    (dict(min_change=65), "min_change: expected"),
    (dict(video_id=99), "video 99: no such stored video"),
    (dict(video_file=b"these are notes\n" * 50), "not a video file"),
    (dict(video_file="header only"), "not a video file|no frame"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_input_is_refused_and_stores_nothing(store, demo, tmp_path, kwargs, message):
    kwargs = dict(kwargs)
    video_id = kwargs.pop("video_id", demo)
    content = kwargs.pop("video_file", None)
    if content is not None:  # a stored row whose file is not (or no longer) a playable video
        if content == "header only":
            content = store.video(demo).path.read_bytes()[:600]
        video_id = store.add_video(content, "bad.mp4", 64, 48, 10.0, 10)[0].id
    with pytest.raises(ValueError, match=message):
        import_video_frames(store, video_id, **kwargs)
    assert store.count_images() == 0 and files(store) == []


def test_no_frame_at_all_is_refused(store, tmp_path):
    """A file with a stream and a header but no frame: probe refuses it, the store keeps nothing."""
    write_video([noise(0)] * 3, tmp_path / "v.mp4", fps=10)
    (tmp_path / "empty.mp4").write_bytes((tmp_path / "v.mp4").read_bytes()[:1200])
    with pytest.raises(ValueError, match="not a video file|no frame"):
        add_video(store, (tmp_path / "empty.mp4").read_bytes(), "empty.mp4")
    assert store.videos() == [] and store.count_images() == 0


# -- chosen frames, with boxes as suggestions ---------------------------------------------


def boxes(*xyxy: list[float]) -> Detections:
    return Detections(np.array(xyxy, np.float32).reshape(-1, 4), np.ones(len(xyxy), np.int64),
                      np.full(len(xyxy), 0.8, np.float32))


def test_import_frames_stores_those_frames_with_suggestions(store, demo):
    result = import_frames(store, demo, {12: boxes([10, 10, 50, 40]), 3: None, 7: boxes()},
                           source="tracker, run 4", run_id=None, split="val")
    records = {store.image(i).frame_index: store.image(i) for i in result.images}
    assert sorted(records) == [3, 7, 12] and result.added == 3 and result.suggested == 2
    assert result.frames_read == 13  # decoding stopped after the last wanted frame
    assert all(r.split == "val" for r in records.values())
    got = store.suggestions(records[12].id)
    assert got.source == "tracker, run 4" and got.boxes.xyxy.tolist() == [[10, 10, 50, 40]]
    assert got.boxes.score.tolist() == pytest.approx([0.8])
    assert len(store.suggestions(records[7].id).boxes) == 0 and store.suggestions(records[3].id) is None


def test_import_frames_again_reuses_images_replaces_suggestions_and_keeps_labels(store, demo):
    first = import_frames(store, demo, {2: boxes([0, 0, 10, 10]), 4: boxes([0, 0, 10, 10])}, source="tracker, run 1")
    store.set_boxes(first.images[1], boxes([1, 1, 9, 9]))  # someone labeled frame 4
    again = import_frames(store, demo, {2: boxes([5, 5, 20, 20]), 4: boxes([5, 5, 20, 20])}, source="tracker, run 2")
    assert again.added == 0 and again.images == first.images and again.suggested == 1
    assert store.suggestions(first.images[0]).source == "tracker, run 2"
    assert store.suggestions(first.images[1]).source == "tracker, run 1"
    assert again.skipped[1] == {"frame": 4, "reason": f"already imported as image {first.images[1]} (labeled: its "
                                                      "boxes stay, no suggestions set)"}


def test_import_frames_past_a_cut_lists_the_missing_ones(store, tmp_path):
    write_video([noise(i, (64, 64)) for i in range(40)], tmp_path / "full.mp4", fps=10)
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    result = import_frames(store, stored(store, tmp_path / "cut.mp4"), {1: None, 38: None})
    assert result.added == 1 and [s["frame"] for s in result.skipped] == [38]
    assert result.skipped[0]["reason"].startswith("not in the video (") and result.warning


BAD_FRAMES = [
    (dict(frames={}), "at least one frame"),
    (dict(frames={-1: None}), "frame indices counted from 0"),
    (dict(frames={20: None}), "frame 20 is past the end"),
    (dict(frames={"3": None}), "frame indices counted from 0"),
    (dict(frames={3: boxes([0, 0, 500, 40])}, source="t"), "outside the 160x96 image"),
    (dict(frames={3: [[0, 0, 5, 5]]}, source="t"), "expected Detections or None"),
    (dict(frames={3: boxes([0, 0, 5, 5])}), "source: expected what made the boxes"),
    (dict(frames={3: None}, split="nope"), "split: expected one of"),
    (dict(frames={3: None}, video_id=42), "video 42: no such stored video"),
]


@pytest.mark.parametrize("kwargs, message", BAD_FRAMES)
def test_import_frames_bad_input_stores_nothing(store, demo, kwargs, message):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=message):
        import_frames(store, kwargs.pop("video_id", demo), **kwargs)
    assert store.count_images() == 0 and files(store) == []


def test_summary_sentence():
    assert FrameImport(3, 1, [7], [{"frame": 4, "reason": "x"}]).summary() == "Added 1 frame of video 3, skipped 1."
