"""Live streams (cowdetect.live, the live job, `track URL`): a real MPEG-TS stream of the demo video,
served over HTTP on 127.0.0.1 by the test itself (tests/streamserver.py) at real time — never the
internet. The stream drops and comes back, does not answer, or sends garbage; the job is stopped
and killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest

from cowdetect import jobs
from cowdetect.accounts import PermissionDenied, User
from cowdetect.cli import main
from cowdetect.config import TrackConfig
from cowdetect.demo import render_video
from cowdetect import live
from cowdetect.live import StreamReader, check_stream_source, display_source, is_live_source
from cowdetect.stream_hosts import NOT_ALLOWED
from cowdetect.tracking import track_stream
from cowdetect.video import SegmentWriter, list_segments, probe_video

from conftest import ROOT, add_tiny_model, new_tiny_box, wait_for
from streamserver import StreamServer, mpegts, silent_port

FPS = 10


@pytest.fixture(scope="module")
def stream_bytes():
    """The demo video, 160x90 at 10 fps, 3 s, as H.264 MPEG-TS (30 frames) and its packets' times."""
    return mpegts((frame for frame, _ in render_video(0, 160, 90, FPS, 3.0)), fps=FPS)


@pytest.fixture
def server(stream_bytes):
    """The stream served in a loop (each client gets it from the start), until the test ends."""
    srv = StreamServer(*stream_bytes, loops=1000)
    yield srv
    srv.stop()


@pytest.fixture
def live_store(store):
    add_tiny_model(store)
    return store


# -- which sources are live, and refusals before any connection ---------------------------------

@pytest.mark.parametrize("text, live", [
    ("rtsp://cam.local:554/stream1", True), ("https://example.org/cows.ts", True), ("udp://239.0.0.1:1234", True),
    ("srt://host:9000", True), ("foo://anything", True),  # a URL: refused by its scheme, not "no such file"
    ("/dev/video0", True), ("cows.mp4", False), ("demo", False), ("", False),
])
def test_is_live_source(text, live):
    assert is_live_source(text) is live


def test_a_named_pipe_streams_until_its_writer_closes(tmp_path, stream_bytes):
    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    assert is_live_source(str(fifo)) and check_stream_source(str(fifo)) == str(fifo)

    def camera() -> None:
        with open(fifo, "wb") as pipe:  # waits for the reader, then writes the whole stream and closes
            pipe.write(stream_bytes[0])

    threading.Thread(target=camera, daemon=True).start()
    reader = StreamReader(str(fifo), timeout=2.0, reconnect=False)
    assert len([f.index for f in reader]) == 3 * FPS and reader.error == f"the stream ended after {3 * FPS} frames"
    started = time.monotonic()
    with pytest.raises(ValueError, match="no answer within 0.5 s"):  # no writer this time
        StreamReader(str(fifo), timeout=0.5)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("text, message", [
    ("foo://camera/1", r"expected a URL starting with one of rtsp://.*got foo://"),
    ("file:///tmp/cows.mp4", "a file:// URL is a stored video; give its path"),
    ("http:///live.ts", "the URL has no host"),
    ("/dev/video99", "no such camera device"),
    ("cows.txt", "expected a stream URL"),
])
def test_sources_refused_before_connecting(text, message):
    with pytest.raises(ValueError, match=message):
        check_stream_source(text)


def test_streams_that_fail_say_so_within_seconds(server):
    """A port that accepts and never answers, one that refuses, and bytes that are no video: one line each."""
    sock, silent = silent_port()
    cases = [(silent, "no answer within 1 s"), ("http://127.0.0.1:1/live.ts", "could not be opened"),
             (server.url.replace("live.ts", "garbage"), "sends no video FFmpeg can read")]
    try:
        for url, message in cases:
            started = time.monotonic()
            with pytest.raises(ValueError, match=message) as caught:
                StreamReader(url, timeout=1.0)
            assert time.monotonic() - started < 3.0, url
            assert "\n" not in str(caught.value) and str(caught.value).startswith(f"stream {url}")
    finally:
        sock.close()


def test_a_password_in_the_url_is_never_shown():
    with pytest.raises(ValueError) as caught:
        StreamReader("http://cow:secret@127.0.0.1:1/live.ts", timeout=1.0)
    assert "secret" not in str(caught.value) and "//***@127.0.0.1" in str(caught.value)


# -- reading: drops, reconnects, frames ----------------------------------------------------------

def test_reconnects_with_back_off_after_the_stream_drops(server):
    # a generous read timeout: on a loaded machine a 1 s stall would itself count as a drop; the drop
    # tested here is the server going away, which ends the connection at once
    reader = StreamReader(server.url, timeout=5.0, first_backoff=0.2, max_backoff=0.8)
    frames = []
    consumer = threading.Thread(target=lambda: frames.extend(f.index for f in reader), daemon=True)
    consumer.start()
    kinds = lambda: [e.kind for e in reader.stats.events]  # noqa: E731
    wait_for(lambda: len(frames) >= 5, 15, "frames from the stream")
    server.stop()  # the camera goes away: open streams end, connections are refused
    wait_for(lambda: reader.stats.state == "reconnecting" and kinds().count("retry_failed") >= 3, 15,
             "failed reconnects")
    before = len(frames)
    server.start()
    wait_for(lambda: "reconnected" in kinds(), 15, "a reconnect")
    wait_for(lambda: len(frames) >= before + 5, 15, "frames after the reconnect")
    reader.stop()
    consumer.join(10)
    assert not consumer.is_alive()
    events = kinds()
    assert events[:2] == ["connected", "dropped"] and events[-1] == "reconnected"
    assert set(events[2:-1]) == {"retry_failed"}
    assert frames == list(range(len(frames)))  # indices go on across the reconnect
    assert reader.stats.summary()["reconnects"] == 1 and reader.stats.summary()["drops"] == 1
    # back-off: waits of 0.2, 0.4, 0.8, 0.8 ... s planned; each real gap is at least its plan (lower
    # bounds only: a loaded machine makes gaps longer, never shorter; event times are to the ms)
    timed = [(datetime.fromisoformat(e.at.rstrip("Z")), e) for e in reader.stats.events]
    fails = [(at, e.message) for at, e in timed if e.kind in ("dropped", "retry_failed", "reconnected")]
    planned = [0.2 * 2 ** i if 0.2 * 2 ** i < 0.8 else 0.8 for i in range(len(fails) - 1)]
    assert [f"waiting {w:g} s" in m for (_, m), w in zip(fails[1:], planned)] == [True] * len(planned)
    gaps = [(b - a).total_seconds() for (a, _), (b, _) in zip(fails, fails[1:])]
    assert all(gap >= wait - 0.002 for gap, wait in zip(gaps, planned)), (gaps, planned)


def test_back_off_does_not_restart_after_a_short_connection(stream_bytes):
    """A camera that connects and drops again at once (here: a 0.6 s clip per connection) must not be
    retried at the first back-off forever: only a connection that lasted stable_after resets it."""
    srv = StreamServer(*stream_bytes, loops=1, speed=5.0)
    reader = StreamReader(srv.url, timeout=1.0, first_backoff=0.1, max_backoff=0.4, stable_after=10.0)
    consumer = threading.Thread(target=lambda: [None for _ in reader], daemon=True)
    consumer.start()
    try:
        wait_for(lambda: reader.stats.counts.get("reconnected", 0) >= 3, 20, "three reconnects")
    finally:
        reader.stop()
        srv.stop()
    consumer.join(10)
    waits = [e.message.split("waiting ")[1].split(" s")[0] for e in reader.stats.events if e.kind == "reconnected"]
    assert waits[:3] == ["0.1", "0.2", "0.4"]  # never back to 0.1


def test_track_stream_writes_complete_segments_and_measures_latency(stream_bytes, tmp_path):
    srv = StreamServer(*stream_bytes, loops=1)  # 3 s, then the stream ends
    try:
        reader = StreamReader(srv.url, timeout=2.0, reconnect=False)
        segments = SegmentWriter(tmp_path / "video", seconds=1.0, fps=reader.info.fps)
        result = track_stream(reader, new_tiny_box(), segments, tmp_path / "t.mot", tmp_path / "t.csv",
                              TrackConfig(detect_every=5, batch_size=1))
    finally:
        srv.stop()
    stats = reader.stats.summary()
    assert result.frames == stats["frames"] > 0 and stats["frames_received"] == result.frames + stats["dropped"]
    assert not result.stopped and result.warning.startswith("the stream")  # it ended, or failed at its end
    assert stats["latency_ms_median"] > 0 and stats["latency_ms_p95"] >= stats["latency_ms_median"]
    found = list_segments(tmp_path / "video")
    assert [p.name for p in found][:2] == ["segment-00001.mp4", "segment-00002.mp4"]
    assert sum(probe_video(p).frames for p in found) == result.frames  # every segment complete, none lost
    assert all(probe_video(p).frames == FPS for p in found[:-1])  # 1 s each
    times = [float(line.split(",")[1]) for line in (tmp_path / "t.csv").read_text().splitlines()[1:]]
    assert times == sorted(times)  # frame times: seconds since the first frame arrived


# -- the live job ---------------------------------------------------------------------------------

def test_stopping_a_live_run_completes_its_last_segment(live_store, server):
    geometry = {"lines": [{"name": "gate", "points": [[80, 0], [80, 90]]}], "zones": []}
    settings = jobs.live_settings(live_store, server.url, model="tiny", segment_seconds=1.0, detect_every=5,
                                  timeout=2.0, geometry=geometry)
    run_id = jobs.create_live_run(live_store, settings)
    worker = threading.Thread(target=jobs.run_live, args=(live_store, run_id), kwargs={"log": lambda m: None})
    worker.start()
    wait_for(lambda: len(jobs.live_segments(live_store, run_id)) >= 1 and live_store.run(run_id).iteration > 12,
             30, "a segment and frames after it")
    jobs.request_stop(live_store, run_id)
    worker.join(30)
    run = live_store.run(run_id)
    assert run.status == "stopped" and run.error is None
    segments = jobs.live_segments(live_store, run_id)
    assert sum(probe_video(p).frames for p in segments) == run.iteration == run.metrics["summary"]["frames"]
    assert [s["name"] for s in run.metrics["segments"]] == [p.name for p in segments]
    assert run.metrics["live"]["latency_ms_median"] > 0 and run.metrics["counts"]["lines"][0]["name"] == "gate"
    folder = jobs.live_outputs(live_store, run_id)["folder"]
    assert (folder / "preview.jpg").is_file() and (folder / "tracks-1.csv").is_file()
    assert (folder / "counts-1.csv").read_text().startswith("kind,name,event")


def test_a_live_run_needs_the_trainer_role(live_store, server):
    viewer = live_store.as_user(User("vic", "viewer"))
    settings = jobs.live_settings(live_store, server.url, model="tiny")
    with pytest.raises(PermissionDenied):
        jobs.create_live_run(viewer, settings)
    assert live_store.runs("live") == []


def test_a_killed_live_worker_leaves_its_segments_playable(live_store, server):
    settings = jobs.live_settings(live_store, server.url, model="tiny", segment_seconds=1.0, detect_every=5,
                                  timeout=2.0)
    run_id = jobs.create_live_run(live_store, settings)
    pid = jobs.start_worker(live_store, run_id)
    try:  # killed mid-segment: a recorded frame count past the second segment
        wait_for(lambda: live_store.run(run_id).iteration >= 2 * FPS + 2, 60, "frames into a third segment")
    finally:
        os.kill(pid, signal.SIGKILL)
    recorded = live_store.run(run_id).iteration  # frames written as of the last record (≤ frames at the kill)
    wait_for(lambda: jobs.mark_interrupted(live_store) == [run_id], 10, "the run marked interrupted")
    assert live_store.run(run_id).status == "interrupted"
    segments = jobs.live_segments(live_store, run_id)
    frames = [probe_video(p).frames for p in segments]
    # every closed segment whole, and at most the open one lost: closed frames ≥ written − one segment
    assert frames == [FPS] * len(frames) and sum(frames) >= recorded - FPS, (frames, recorded)


# -- the command line ------------------------------------------------------------------------------

def test_cli_tracks_a_stream_until_ctrl_c(live_store, server, tmp_path, capsys):
    out = tmp_path / "out"

    def interrupt_after_two_segments() -> None:
        wait_for(lambda: len(list(out.glob("segment-*.mp4"))) >= 2, 30, "two segments in --out")
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl+C sends; the CLI stops gracefully

    threading.Thread(target=interrupt_after_two_segments, daemon=True).start()
    code = main(["track", server.url, "--out", str(out), "--data-dir", str(live_store.data_dir), "--model", "tiny",
                 "--segment-seconds", "1", "--detect-every", "5", "--line", "gate=80,0,80,90", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "stopped" and report["frames"] > 20 and report["lines"][0]["name"] == "gate"
    assert set(report) >= {"fps", "dropped", "latency_ms_median", "latency_ms_p95", "reconnects", "segments"}
    copied = sorted(p.name for p in out.glob("segment-*.mp4"))
    assert copied == report["segments"] and sum(probe_video(out / n).frames for n in copied) == report["frames"]
    assert (out / "tracks.csv").is_file() and (out / "counts.csv").is_file()


@pytest.mark.parametrize("source, extra, message", [
    ("foo://camera", [], "expected a URL starting with one of"),
    ("SILENT", ["--timeout", "1"], "no answer within 1 s"),
    ("GARBAGE", [], "sends no video FFmpeg can read"),
    ("STREAM", ["--line", "gate=80,0,800,90"], "outside the 160x90 frame"),
    ("STREAM", ["--segment-seconds", "0.1"], "--segment-seconds: expected seconds from 0.5 to 3600"),
])
def test_cli_bad_streams_fail_in_one_line_fast(store, server, tmp_path, capsys, source, extra, message):
    sock, silent = silent_port()
    source = {"SILENT": silent, "GARBAGE": server.url.replace("live.ts", "garbage"),
              "STREAM": server.url}.get(source, source)
    started = time.monotonic()
    try:
        code = main(["track", source, "--out", str(tmp_path / "out"), "--data-dir", str(store.data_dir), *extra])
    finally:
        sock.close()
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and "\n" not in err, err
    assert time.monotonic() - started < 4.0
    assert store.runs() == []  # refused before a run was stored


def test_cli_help_says_out_is_a_folder_for_streams():
    proc = subprocess.run([sys.executable, "-m", "cowdetect", "track", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert "a folder for its MP4 segments" in " ".join(proc.stdout.split()) and "--segment-seconds" in proc.stdout


@pytest.mark.parametrize("url, secret", [
    ("rtsp://admin:p@ss@cam.local/stream1", "ss@"),        # FFmpeg splits user info at the last '@'
    ("rtsp://0123abcdtoken@cam.local/stream1", "0123abcdtoken"),
    ("http://cam.local/video.cgi?user=admin&pwd=hunter2", "hunter2"),
    ("rtsp://cam.local/s?Password=hunter2&channel=1", "hunter2"),
])
def test_credentials_of_every_form_are_masked(url, secret):
    """Hostile test: passwords holding '@', tokens as user info and passwords in the query."""
    shown = display_source(url)
    assert secret not in shown and "cam.local" in shown
    with pytest.raises(ValueError) as caught:
        check_stream_source(url.replace("://", "x://", 1))  # an unknown scheme: the refusal names the URL
    assert secret not in str(caught.value)


def test_live_settings_refuse_bad_geometry_names_before_storing(live_store):
    """Hostile test: a name with a line break (it goes into CSVs and logs) or one used twice was only
    refused by the worker, after the run was stored."""
    for lines, message in [([{"name": "gate\nx", "points": [[0, 0], [9, 9]]}], "name"),
                           ([{"name": "g", "points": [[0, 0], [9, 9]]}] * 2, "used twice")]:
        with pytest.raises(ValueError, match=message):
            jobs.live_settings(live_store, "http://127.0.0.1:1/live.ts", geometry={"lines": lines})
    assert live_store.runs("live") == []


# -- who may read which source (review #3), credentials kept out of the database (#4) -------------

@pytest.mark.parametrize("url", ["tcp://127.0.0.1:9000?listen=1", "tcp://127.0.0.1:9000?listen", "udp://@:1234",
                                 "udp://:1234", "srt://cam.local:9000?mode=listener", "rtmp://cam.local/app?listen"])
def test_urls_that_make_the_server_listen_are_refused_for_everyone(url):
    with pytest.raises(ValueError, match="makes the server listen on a port"):
        check_stream_source(url)


def test_a_trainer_reads_only_listed_hosts_and_no_pipe_or_device(live_store, tmp_path, monkeypatch):
    trainer = live_store.as_user(User("tess", "trainer"))
    live_store.add_user("ada", "admin", "password123")  # the first account is an admin's
    live_store.add_user("tess", "trainer", "password123")
    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    monkeypatch.setenv("COWDETECT_STREAM_HOSTS", "cam.barn, 10.1.0.0/16")
    for source in (str(fifo), "/dev/video0", "/etc/passwd"):  # one answer, before the path is looked at
        with pytest.raises(PermissionDenied, match="needs the admin role"):
            jobs.live_settings(trainer, source, model="tiny")
    for url in ("http://127.0.0.1:8080/live.ts", "http://2130706433/live.ts", "rtsp://u:p@cam.barn.evil/s",
                "http://10.2.0.1/x.ts"):
        with pytest.raises(ValueError) as caught:
            jobs.live_settings(trainer, url, model="tiny")
        assert str(caught.value) == NOT_ALLOWED  # the same words whatever the host
    for url in ("rtsp://u:p@CAM.barn./stream1", "http://10.1.200.3:8080/live.ts"):
        assert jobs.live_settings(trainer, url, model="tiny")["source"].startswith(url.split(":")[0])
    assert jobs.live_settings(live_store, str(fifo), model="tiny")["source"] == str(fifo)  # the admin: any
    assert jobs.live_settings(live_store, "http://127.0.0.1:1/live.ts", model="tiny")
    assert live_store.runs("live") == []


def test_the_protocol_whitelist_reaches_ffmpeg_and_keeps_http_working(server, monkeypatch):
    reader = StreamReader(server.url, timeout=2.0)  # http with its whitelist "http,tcp" opens
    reader.close()
    monkeypatch.setitem(live.PROTOCOLS, "http", "tcp")  # the same URL, http left off its whitelist
    with pytest.raises(ValueError, match="could not be opened"):
        StreamReader(server.url, timeout=2.0)


def test_the_password_is_kept_out_of_the_database_and_the_worker_still_connects(live_store, server, capsys):
    url = server.url.replace("http://", "http://cow:hunter2@")  # the test server ignores the credentials
    settings = jobs.live_settings(live_store, url, model="tiny", segment_seconds=1.0, detect_every=5, timeout=2.0,
                                  duration=1.5)
    run_id = jobs.create_live_run(live_store, settings)
    secret = jobs.live_outputs(live_store, run_id)["folder"] / "source.url"
    assert secret.read_text() == url and secret.stat().st_mode & 0o777 == 0o600
    run = jobs.run_live(live_store, run_id, log=lambda m: None)
    assert run.status == "done" and run.iteration > 0  # the worker read source.url and connected
    assert run.params["source"] == display_source(url) and "hunter2" not in json.dumps(run.params)
    assert main(["runs", "--json", "--data-dir", str(live_store.data_dir)]) == 0
    shown = capsys.readouterr().out
    assert "hunter2" not in shown and f'"id": {run_id}' in shown
    database = b"".join(p.read_bytes() for p in live_store.data_dir.glob("cowdetect.sqlite*") if p.is_file())
    assert database and b"hunter2" not in database and b"***@127.0.0.1" in database
    other = jobs.live_settings(live_store, url.replace("hunter2", "other"), model="tiny")
    assert other["source"] == run.params["source"] and other["source_key"] != run.params["source_key"]


def test_a_failing_segment_close_is_reported_not_lost(tmp_path):
    """Review #6: an error after encoding (the rename, on_closed's copy) lands in .error and is raised."""
    def broken_copy(path):
        raise OSError(28, "No space left on device")

    writer = SegmentWriter(tmp_path / "v", seconds=0.2, fps=10, on_closed=broken_copy)
    frame = __import__("numpy").zeros((32, 32, 3), "uint8")
    writer.write(frame)
    writer.write(frame)  # the segment is full: closed (synchronously) and on_closed fails
    with pytest.raises(OSError, match="No space left"):
        writer.write(frame)
    with pytest.raises(OSError, match="No space left"):
        writer.close()
