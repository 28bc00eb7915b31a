"""Tracking as a job (store rows, files, ground-truth scores), video uploads, and the CLI's `track`."""

from __future__ import annotations

import json

import pytest

from cowdetect import jobs
from cowdetect.cli import main
from cowdetect.mot import read_mot
from cowdetect.video import probe_video


def test_tracking_run_stores_results_and_scores(video_store):
    video = video_store.videos()[0]
    settings = jobs.tracking_settings(video_store, video.id, model="tiny", score_threshold=0.05)
    run_id = jobs.create_tracking_run(video_store, settings)
    assert jobs.create_tracking_run(video_store, settings) == run_id  # a double click makes one job
    run = jobs.run_tracking(video_store, run_id, log=lambda m: None)
    assert run.status == "done" and run.iteration == run.total == 20
    files = jobs.track_outputs(video_store, run_id)
    assert probe_video(files["video"]).frames == 20 and files["preview"].is_file()
    summary = run.metrics["summary"]
    assert summary["frames"] == 20 and summary["num_tracks"] == read_mot(files["mot"])["id"].nunique()
    mot = run.metrics["mot"]  # the demo video carries ground truth
    assert set(mot) >= {"mota", "idf1", "id_switches", "fragmentations"} and mot["num_unique_objects"] >= 3


def test_tracking_settings_checks(video_store):
    video_id = video_store.videos()[0].id
    with pytest.raises(ValueError, match="no such stored video"):
        jobs.tracking_settings(video_store, 99)
    with pytest.raises(ValueError, match="distance: expected one of"):
        jobs.tracking_settings(video_store, video_id, distance="cosine")
    with pytest.raises(ValueError, match="unknown settings"):
        jobs.tracking_settings(video_store, video_id, speed=3)
    assert jobs.tracking_settings(video_store, video_id)["model_label"] == "tiny (#1)"  # the active (newest) version
    assert jobs.tracking_settings(video_store, video_id)["model"] == "#1"  # pinned: a later active version changes nothing
    pretrained = jobs.tracking_settings(video_store, video_id, model="pretrained")
    assert pretrained["model"] == "coco:ssd_mobilenet_v2_coco" and pretrained["model_label"] == "pretrained ssd_mobilenet_v2_coco (cow+horse+sheep)"
    with pytest.raises(ValueError):
        jobs.tracking_settings(video_store, video_id, model="no-such-model")


def test_stop_before_start_and_requeue(video_store):
    """(Stopping mid-video keeps the frames done: see test_tracking.test_stop_keeps_what_was_done.)"""
    video_id = video_store.videos()[0].id
    run_id = jobs.create_tracking_run(video_store, jobs.tracking_settings(video_store, video_id, model="tiny"))
    video_store.update_run(run_id, stop_requested=1)
    run = jobs.run_job(video_store, run_id, log=lambda m: None)
    assert run.status == "stopped" and run.iteration == 0
    jobs.prepare_resume(video_store, run_id)  # queued again: tracking starts over
    assert jobs.run_job(video_store, run_id, log=lambda m: None).status == "done"


@pytest.mark.parametrize("name, content, ground_truth, message", [
    ("notes.txt", b"hello", None, "expected a video file"),
    ("cows.mp4", b"", None, "the file is empty"),
    ("cows.mp4", b"GIF89a not a video at all", None, "not a video file|no frame that can be decoded"),
    ("demo", None, "1,2,three\n", "expected comma-separated numbers"),
])
def test_bad_uploads_change_nothing(video_store, name, content, ground_truth, message):
    before = video_store.videos()
    if content is None:  # a good video with bad ground truth
        name, content = "other.mp4", before[0].path.read_bytes()[:-1] + b"\x00"
    with pytest.raises(ValueError, match=message):
        jobs.add_video(video_store, content, name, ground_truth)
    assert video_store.videos() == before
    assert not list((video_store.data_dir / "tmp").glob("*"))  # no scratch file left behind


def test_cli_track(video_store, tmp_path, capsys):
    video = video_store.videos()[0]
    out = tmp_path / "tracked.mp4"
    code = main(["track", str(video.path), "--data-dir", str(video_store.data_dir), "--out", str(out),
                 "--model", "tiny", "--gt", str(video.gt_path), "--csv", str(tmp_path / "t.csv"),
                 "--detect-every", "2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 20 and report["status"] == "done" and "mota" in report and "idf1" in report
    assert probe_video(out).codec == "h264" and (tmp_path / "t.csv").is_file()
    assert video_store.runs("track")[0].params["config"]["detect_every"] == 2
    assert report["to_label"] == video_store.runs("track")[0].metrics["to_label"]  # the frames where tracking broke
    assert all(set(f) == {"frame", "time", "kind", "reason", "track_ids"} for f in report["to_label"])


def test_cli_track_bad_video(video_store, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    code = main(["track", str(bad), "--data-dir", str(video_store.data_dir), "--out", str(tmp_path / "o.mp4")])
    assert code == 2 and "not a video file" in capsys.readouterr().err
    assert len(video_store.videos()) == 1 and not video_store.runs("track")


def test_ground_truth_given_with_a_stored_video_is_attached(tmp_path):
    """Before: uploading a stored video again with its ground truth dropped the ground truth while the
    page said "Added". Now it is attached (or replaced), and the note says which."""
    from cowdetect.demo import make_demo_video
    from cowdetect.store import Store
    store = Store(tmp_path / "data")
    make_demo_video(store, seconds=1.0, fps=10, size=(160, 96))
    video = store.videos()[0]
    data, truth = video.path.read_bytes(), video.gt_path.read_text()
    plain = Store(tmp_path / "plain")
    first, note = jobs.add_video(plain, data, "cows.mp4")
    assert first.gt_path is None and note == "Added cows.mp4."
    again, note = jobs.add_video(plain, data, "cows.mp4", truth)
    assert again.id == first.id and again.gt_path.read_text() == truth and "ground truth was attached" in note
    _, note = jobs.add_video(plain, data, "cows.mp4", truth)
    assert "already stored with this ground truth" in note and len(plain.videos()) == 1
    shifted = "\n".join(",".join(["1"] + line.split(",")[1:]) for line in truth.splitlines()[:3]) + "\n"
    _, note = jobs.add_video(plain, data, "cows.mp4", shifted)
    assert "replaced" in note and plain.video(first.id).gt_path.read_text() == shifted


@pytest.mark.parametrize("config, size, message", [
    ({"distance_threshold": -1.0}, None, "distance_threshold: expected a positive number"),
    ({"distance_threshold": float("nan")}, None, "distance_threshold: expected a positive number"),
    ({"distance_threshold": float("inf")}, None, "distance_threshold: expected a positive number"),
    ({"score_threshold": float("nan")}, None, "score_threshold: expected 0 to 1"),
    ({"distance": "cosine"}, None, "distance: expected one of"),
    ({"tiles": "16x16"}, (160, 96), "tiles: 16x16 tiles of a 160x96 image"),
])
def test_check_track_config_refuses_before_any_work(config, size, message):
    with pytest.raises(ValueError, match=message):
        jobs.check_track_config(config, *(size or (None, None)))


def test_bad_ground_truth_names_the_video_not_a_scratch_file(video_store):
    content = video_store.videos()[0].path.read_bytes()[:-1] + b"\x00"  # another video
    with pytest.raises(ValueError) as refused:
        jobs.add_video(video_store, content, "other.mp4", "1,2,three\n")
    message = str(refused.value)
    assert message.startswith("ground truth for other.mp4: expected comma-separated numbers"), message
    assert "probe" not in message and "tmp" not in message and len(video_store.videos()) == 1
