"""The Track page's Live stream choice through AppTest, on a real stream served by the test (127.0.0.1)."""

from __future__ import annotations

import os
import signal
import threading

from conftest import add_tiny_model, open_page, wait_for
from cowdetect import jobs
from cowdetect.demo import render_video
from cowdetect.video import probe_video
from streamserver import StreamServer, mpegts


def live_page(store, monkeypatch):
    at = open_page("track", store, monkeypatch)
    at.radio(key="track_source").set_value("Live stream").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_start_refuses_a_bad_source_and_starts_a_worker_for_a_good_one(store, monkeypatch):
    add_tiny_model(store)
    at = live_page(store, monkeypatch)
    assert "No live run yet" in " ".join(i.value for i in at.info)
    at.text_input(key="live_source").input("foo://camera/1")
    at.button[0].click().run()
    assert "expected a URL starting with one of rtsp://" in " ".join(e.value for e in at.error)
    assert store.runs() == []
    at.text_input(key="live_source").input("rtsp://127.0.0.1:1/stream")
    at.selectbox(key="live_model").select("#1")
    at.button[0].click().run()
    [run] = store.runs("live")
    os.kill(run.pid, signal.SIGKILL)  # its worker started; what it does is test_live's business
    assert run.params["source"] == "rtsp://127.0.0.1:1/stream" and run.params["model_label"] == "tiny (#1)"


def test_a_running_live_run_shows_its_preview_numbers_and_stops(store, monkeypatch):
    add_tiny_model(store)
    data, marks = mpegts((frame for frame, _ in render_video(0, 160, 90, 10, 3.0)), fps=10)
    server = StreamServer(data, marks, loops=1000)
    run_id = worker = None
    try:
        settings = jobs.live_settings(store, server.url, model="tiny", segment_seconds=1.0, detect_every=5)
        run_id = jobs.create_live_run(store, settings)
        worker = threading.Thread(target=jobs.run_live, args=(store, run_id), kwargs={"log": lambda m: None})
        worker.start()
        preview = jobs.live_outputs(store, run_id)["preview"]
        wait_for(lambda: jobs.live_segments(store, run_id) and preview.is_file(), 30, "a segment and a preview")
        at = live_page(store, monkeypatch)
        assert {"Frames", "Speed", "Dropped", "Latency", "Reconnects"} <= {m.label for m in at.metric}
        assert len(at.get("image")) == 1 and len(at.get("video")) == 1  # the preview and the latest segment
        assert "complete segments" in " ".join(c.value for c in at.caption)
        at.button(key=f"live-stop-{run_id}").click().run()
        worker.join(30)
    finally:
        if run_id is not None:
            jobs.request_stop(store, run_id)  # (a no-op once stopped) no worker outlives a failed test
        if worker is not None:
            worker.join(30)
        server.stop()
    assert store.run(run_id).status == "stopped"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    names = at.selectbox(key=f"live_segment_pick{run_id}").options
    assert names == [p.name for p in jobs.live_segments(store, run_id)][::-1]
    assert all(probe_video(p).frames for p in jobs.live_segments(store, run_id))
