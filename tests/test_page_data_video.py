"""The Data page's "Frames from a video" tab through AppTest: a stored video → frames by a real
background job (progress and Stop while it runs), the report and its skip list, a second import
adding nothing, and bad input refused with nothing stored and no run."""

from __future__ import annotations

from conftest import open_page, statuses_until_done
from cowdetect.demo import make_demo_video


def import_button(at):
    return next(b for b in at.button if b.label == "Import frames")


def test_frames_of_a_stored_video_then_again(store, monkeypatch):
    video_id = make_demo_video(store, seconds=2.0, fps=10, size=(160, 96))
    at = open_page("data", store, monkeypatch)
    assert at.selectbox(key="frames_video").value == video_id
    at.radio(key="frames_how").set_value("count")
    at.number_input(key="frames_amount").set_value(4.0)
    at.number_input(key="frames_min_change").set_value(0)
    at.selectbox(key="frames_split").set_value("train")
    import_button(at).click().run()
    assert not at.exception, [e.value for e in at.exception]
    run = store.runs("frames")[0]
    assert run.pid and run.params["device"] == "io" and run.params["count"] == 4
    statuses_until_done(store, run.id)
    at.run()
    assert not at.exception and at.success[0].value == "Added 4 frames, skipped 0."
    assert [(r.frame_index, r.split) for r in store.images()] == [(0, "train"), (5, "train"), (10, "train"),
                                                                  (15, "train")]
    import_button(at).click().run()
    again = store.runs("frames")[0]
    assert again.id != run.id
    statuses_until_done(store, again.id)
    at.run()
    assert at.warning[0].value == "Added 0 frames, skipped 4." and store.count_images() == 4
    skipped = at.dataframe[0].value
    assert list(skipped["frame"]) == [0, 5, 10, 15]
    assert skipped["reason"].iloc[0] == f"already imported as image {store.images()[0].id}"


def test_no_video_and_bad_settings_say_so_and_store_nothing(store, monkeypatch):
    at = open_page("data", store, monkeypatch)
    import_button(at).click().run()
    assert "choose a video first" in at.error[0].value and store.runs() == []
    make_demo_video(store, seconds=1.0, fps=10, size=(160, 96))
    at = open_page("data", store, monkeypatch)
    at.radio(key="frames_how").set_value("count")
    at.number_input(key="frames_amount").set_value(0.2)  # rounds to 0 frames
    import_button(at).click().run()
    assert "count: expected a positive whole number" in at.error[0].value and store.count_images() == 0
    assert store.runs("frames") == []
