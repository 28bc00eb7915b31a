"""The Track page through AppTest: the empty guard, a real background tracking job, results, comparison."""

from __future__ import annotations


from importlib.util import find_spec

from streamlit.testing.v1 import AppTest

from conftest import open_page, run_with_switch, statuses_until_done
from cowdetect import jobs


def page(store, monkeypatch) -> AppTest:
    return open_page("track", store, monkeypatch)


def test_no_video_yet(store, monkeypatch):
    at = page(store, monkeypatch)
    assert "No video yet" in " ".join(i.value for i in at.info)


def test_several_videos_without_ray_say_how_to_install_it(video_store, monkeypatch):
    """Ray is optional: without it (as `import ray` finds nothing) the section says how to add it."""
    import sys

    from cowdetect.cluster import INSTALL_HINT

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    at = page(video_store, monkeypatch)
    at.radio(key="track_source").set_value("Several videos (Ray)").run()
    assert not at.exception, [e.value for e in at.exception]
    assert INSTALL_HINT in [i.value for i in at.info] and not [b for b in at.button if b.label == "Track on Ray"]


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


def test_draw_counting_lines_and_zones_then_see_the_counts(video_store, monkeypatch):
    """The canvas is a browser component: its value is injected through session state, the way its
    "line" tool (a fabric Line centred on left/top, ends relative to the centre) and "polygon" tool
    (absolute canvas points) report. The 160x96 video is shown 4.5x (720x432 canvas px)."""
    video = video_store.videos()[0]
    at = page(video_store, monkeypatch)

    def draw(objects: list[dict]) -> None:
        fresh = at.session_state["counting_canvas"] if "counting_canvas" in at.session_state else 0  # after each add
        at.session_state[f"counting-{video.id}-{fresh}"] = {"drawing": {"raw": {"objects": objects}, "data": None}}
        at.run()
        assert not at.exception, [e.value for e in at.exception]

    def add() -> None:
        at.button(key="counting_add").click().run()
        assert not at.exception, [e.value for e in at.exception]

    # a line dragged from (360, 432) up to (360, 0) canvas px: frame px (80, 96) -> (80, 0)
    draw([{"type": "line", "left": 360, "top": 216, "x1": 0, "y1": 216, "x2": 0, "y2": -216, "originX": "center",
           "originY": "center", "scaleX": 1, "scaleY": 1, "width": 0, "height": 432}])
    at.text_input(key="counting_name").input("gate")
    add()
    assert video_store.video(video.id).geometry == {"lines": [{"name": "gate", "points": [[80.0, 96.0], [80.0, 0.0]]}],
                                                    "zones": []}
    at.radio(key="counting_mode").set_value("zone")
    bowtie = [{"x": 0, "y": 0}, {"x": 450, "y": 450}, {"x": 450, "y": 0}, {"x": 0, "y": 450}]
    draw([{"type": "polygon", "points": bowtie}])
    add()
    assert "Not added: zone 'zone1': its edges cross" in at.error[0].value
    assert len(video_store.video(video.id).geometry["zones"]) == 0  # the refusal changed nothing
    square = [{"x": 0, "y": 180}, {"x": 360, "y": 180}, {"x": 360, "y": 432}, {"x": 0, "y": 432}]
    draw([{"type": "polygon", "points": square}])
    add()
    (zone,) = video_store.video(video.id).geometry["zones"]
    assert zone == {"name": "zone1", "points": [[0.0, 40.0], [80.0, 40.0], [80.0, 96.0], [0.0, 96.0]]}
    assert [c.key for c in at.button if c.key.startswith("counting-del-")] == ["counting-del-gate",
                                                                               "counting-del-zone1"]
    # a run (started by the form, or here in-process: the form's own run is tested above) counts on them
    settings = jobs.tracking_settings(video_store, video.id, model="tiny", score_threshold=0.3, detect_every=3)
    assert settings["geometry"] == video_store.video(video.id).geometry
    jobs.run_tracking(video_store, jobs.create_tracking_run(video_store, settings), log=lambda m: None)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Counts" in [s.value for s in at.subheader]
    labels = {m.label: m.value for m in at.metric}
    assert {"gate forward", "gate backward", "zone1 most inside", "zone1 longest stay"} <= set(labels)
    run = video_store.runs("track")[0]
    assert labels["zone1 most inside"] == str(run.metrics["counts"]["zones"][0]["max_inside"])
    assert "Counts CSV" in [d.proto.label for d in at.get("download_button")]
    at.button(key="counting-del-zone1").click().run()
    assert video_store.video(video.id).geometry["zones"] == [] and "Removed zone1." in at.success[0].value
