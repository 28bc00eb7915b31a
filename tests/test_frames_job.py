"""The frame-import job (cowdetect.jobs.frames), run in the foreground as the CLI runs it: frames
and metrics stored, Stop keeping what was stored and a resume finishing without duplicates,
bad settings refused before any run row exists, and its own device: an import never waits for a
training run, only for another import."""

from __future__ import annotations

import os

import pytest

from conftest import run_with_switch
from cowdetect import jobs
from cowdetect.demo import make_demo_video


class Waited(Exception):
    """Raised by a test's log when the job says it waits for a device."""


def quiet(message: str) -> None:
    pass


@pytest.fixture
def video_id(store) -> int:
    """A 2 s, 160x96, 10 fps demo video (20 frames) in ``store``."""
    return make_demo_video(store, seconds=2.0, fps=10, size=(160, 96))


def test_the_job_imports_the_frames_and_keeps_the_result_in_its_metrics(store, video_id):
    settings = jobs.frames_settings(store, video_id, count=4, split="train", min_change=0)
    assert settings["device"] == "io" and settings["video_name"] == "demo-cows.mp4"
    run_id = jobs.create_frames_run(store, settings)
    assert jobs.create_frames_run(store, settings) == run_id  # a double click: the same run
    run = jobs.run_frames(store, run_id, log=quiet)
    assert run.status == "done" and run.iteration == run.total == 16  # decoding stops at the 4th frame kept
    images = store.images()
    assert [(r.frame_index, r.split) for r in images] == [(0, "train"), (5, "train"), (10, "train"), (15, "train")]
    m = run.metrics
    assert (m["added"], m["skipped"], m["images"], m["video_id"]) == (4, [], [r.id for r in images], video_id)
    assert jobs.frame_import_of(run).summary() == f"Added 4 frames of video {video_id}, skipped 0."
    again = jobs.run_frames(store, jobs.create_frames_run(store, settings), log=quiet)
    assert again.metrics["added"] == 0 and [s["frame"] for s in again.metrics["skipped"]] == [0, 5, 10, 15]
    assert store.count_images() == 4


def test_chosen_frames_are_imported_as_they_are(store, video_id):
    settings = jobs.frames_settings(store, video_id, frames=[7, 3, 7])
    assert settings["frames"] == [3, 7] and settings["from_run"] is None
    run = jobs.run_frames(store, jobs.create_frames_run(store, settings), log=quiet)
    assert run.status == "done" and run.metrics["added"] == 2 and run.total == 8
    assert [r.frame_index for r in store.images()] == [3, 7]
    assert store.image_states([r.id for r in store.images()]) == {r.id: "unlabeled" for r in store.images()}


def test_stop_then_resume_finishes_without_duplicates(store, video_id):
    run_id = jobs.create_frames_run(store, jobs.frames_settings(store, video_id, count=4, min_change=0))

    def stop_once_started(message: str) -> None:  # the stop comes while it imports, as from the page
        if "importing" in message:
            jobs.request_stop(store, run_id)

    run = jobs.run_frames(store, run_id, log=stop_once_started)
    assert run.status == "stopped" and "resume to go on" in run.error and run.metrics["stopped"]
    jobs.prepare_resume(store, run_id)
    run = jobs.run_frames(store, run_id, log=quiet)
    assert run.status == "done" and not run.metrics["stopped"]
    assert [r.frame_index for r in store.images()] == [0, 5, 10, 15]  # each frame once
    assert run.metrics["added"] == 4 and run.metrics["skipped"] == []
    assert sorted(run.metrics["images"]) == [r.id for r in store.images()]


def test_a_pass_killed_before_writing_its_counts_is_still_counted(store, video_id):
    """kill -9 after two frames were stored, before the pass wrote any count: the resumed run counts
    them as its own (from the store), and does not list them as "already imported"."""
    from cowdetect.frames import import_video_frames

    run_id = jobs.create_frames_run(store, jobs.frames_settings(store, video_id, count=4, min_change=0))
    store.update_run(run_id, metrics={"after_image": 0}, status="interrupted")  # as the killed pass left it
    import_video_frames(store, video_id, count=2, min_change=0)  # what the killed pass had stored: frames 0, 10
    jobs.prepare_resume(store, run_id)
    run = jobs.run_frames(store, run_id, log=quiet)
    assert run.status == "done" and [r.frame_index for r in store.images()] == [0, 10, 5, 15]
    assert run.metrics["added"] == 4 and run.metrics["skipped"] == []


def test_from_run_adds_the_frames_where_tracking_broke_with_the_trackers_boxes(video_store):
    track_id, _ = run_with_switch(video_store)
    wanted = [f["frame"] for f in video_store.run(track_id).metrics["to_label"]]
    video_id = video_store.run(track_id).params["video_id"]
    settings = jobs.frames_settings(video_store, video_id, from_run=track_id)
    assert settings["frames"] == sorted(wanted)
    run = jobs.run_frames(video_store, jobs.create_frames_run(video_store, settings), log=quiet)
    assert run.metrics["added"] == run.metrics["suggested"] == len(wanted)
    assert set(video_store.image_states(run.metrics["images"]).values()) == {"suggested"}


BAD = [
    ({"every": 0}, "every: expected a positive number"),
    ({"count": 0}, "count: expected a positive whole number"),
    ({"every": 1.0, "count": 3}, "got both"),
    ({"split": "holdout"}, "split: expected one of"),
    ({"min_change": 65}, "min_change: expected"),
    ({"video_id": 99}, "video 99: no such stored video"),
    ({"frames": []}, "frames: expected a non-empty list"),
    ({"frames": [2, -1]}, "frames: expected frame indexes counted from 0, got -1"),
    ({"frames": [20]}, "frame 20 is past the end of video 1"),
    ({"frames": [3], "every": 1.0}, "only for sampling"),
    ({"from_run": 99}, "run 99: no such run"),
    ({"from_run": "TRAIN"}, "is a train run, not a tracking run"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_settings_are_refused_before_any_run_exists(store, video_id, change, message):
    change = dict(change)
    if change.get("from_run") == "TRAIN":
        change["from_run"], _ = store.add_run("train", {"device": "cpu"})
    kwargs = {"video_id": video_id, **change}
    with pytest.raises(ValueError, match=message):
        jobs.frames_settings(store, **kwargs)
    assert store.runs("frames") == [] and store.count_images() == 0


def test_from_run_must_have_tracked_this_video(video_store):
    track_id, _ = run_with_switch(video_store)
    other = make_demo_video(video_store, seconds=1.0, fps=10, size=(160, 96))
    with pytest.raises(ValueError, match=f"run {track_id} tracked video 1, not video {other}"):
        jobs.frames_settings(video_store, other, from_run=track_id)
    assert video_store.runs("frames") == []


def running_row(store, kind: str, device: str) -> int:
    """A run of ``kind`` running on ``device`` for a live process (this test's)."""
    run_id, _ = store.add_run(kind, {"device": device})
    store.update_run(run_id, status="running", device=device, pid=os.getpid())
    return run_id


def refuse_to_wait(message: str) -> None:
    if "waits for" in message:
        raise Waited(message)


def test_an_import_does_not_wait_for_a_training_run_but_for_another_import(store, video_id):
    training = running_row(store, "train", "cpu")
    run = jobs.run_frames(store, jobs.create_frames_run(store, jobs.frames_settings(store, video_id, count=2)),
                          log=refuse_to_wait)
    assert run.status == "done" and store.run(training).status == "running"
    importing = running_row(store, "frames", "io")
    waiting = jobs.create_frames_run(store, jobs.frames_settings(store, video_id, count=3))
    with pytest.raises(Waited, match=f"run {waiting} waits for run {importing} on io"):
        jobs.run_frames(store, waiting, log=refuse_to_wait)
