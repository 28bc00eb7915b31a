"""The Track page through AppTest: the empty guard, a real background tracking job, results, comparison."""

from __future__ import annotations


from streamlit.testing.v1 import AppTest

from conftest import open_page, run_with_switch, statuses_until_done
from cowdetect import jobs


def page(store, monkeypatch) -> AppTest:
    return open_page("track", store, monkeypatch)


def test_no_video_yet(store, monkeypatch):
    at = page(store, monkeypatch)
    assert "No video yet" in " ".join(i.value for i in at.info)


def test_track_compare_and_download(video_store, monkeypatch):
    at = page(video_store, monkeypatch)
    assert "No tracking run on this video yet" in " ".join(i.value for i in at.info)
    at.selectbox(key="track_model").select("#1")  # the tiny model version, by id
    at.slider(key="score").set_value(0.05)
    next(b for b in at.button if b.label == "Track").click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = video_store.runs("track")[0]
    assert run.pid and run.params["model_label"] == "tiny (#1)" and run.params["model"] == "#1"
    statuses_until_done(video_store, run.id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = {m.label for m in at.metric}
    assert {"Unique cows", "Most at once", "Speed", "MOTA", "IDF1", "ID switches"} <= labels
    assert len(at.get("video")) == 1 and len(at.get("download_button")) == 2
    # a second model run on the same video: the comparison appears with MOTA / IDF1 for both
    second = jobs.create_tracking_run(video_store, jobs.tracking_settings(
        video_store, run.params["video_id"], model="tiny", score_threshold=0.3, detect_every=1))
    jobs.run_tracking(video_store, second, log=lambda m: None)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Compare two models on this video" in [s.value for s in at.subheader]
    table = at.dataframe[-1].value
    assert list(table.index) == [f"run {second} · tiny (#1)", f"run {run.id} · tiny (#1)"]
    assert table["mota"].notna().all() and table["idf1"].notna().all()
    assert len(at.get("video")) == 3


def test_frames_where_tracking_broke_go_to_the_dataset(video_store, monkeypatch):
    run_id, _ = run_with_switch(video_store)
    found = jobs.frames_to_label_of(video_store, run_id)
    at = page(video_store, monkeypatch)
    assert f"Frames worth labeling ({len(found)})" in [s.value for s in at.subheader]
    boxes = [c for c in at.checkbox if c.key.startswith(f"tolabel-{run_id}-")]
    assert [c.key for c in boxes] == [f"tolabel-{run_id}-{f['frame']}" for f in found] and all(c.value for c in boxes)
    for extra in boxes[1:]:
        extra.uncheck()
    at.run()
    at.button(key=f"tolabel-add-{run_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (added,) = video_store.runs("frames")  # a background job, not work inside the page
    assert added.pid and added.params["from_run"] == run_id and added.params["frames"] == [found[0]["frame"]]
    statuses_until_done(video_store, added.id)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Added 1 frame with the tracker's boxes as suggestions" in at.success[0].value
    (image,) = video_store.images()
    assert image.frame_index == found[0]["frame"] and video_store.image_states([image.id]) == {image.id: "suggested"}
