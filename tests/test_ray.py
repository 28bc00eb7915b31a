"""Many videos and images on Ray (``track-many``, ``prelabel --ray``): a real local Ray cluster with
one or two worker slots; the pretrained SSD on small demo videos. Tracks must equal a plain
``track`` of each video in another data folder (so not replayed from the detections Ray kept), a
worker killed with SIGKILL mid-video is run again, a Stop (of the run, or of one video's run), a
broken video and Ctrl+C of the driver each end the runs as they should. Without Ray installed these
are skipped (a failure where COWDETECT_REQUIRE_RAY=1, as in CI)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, wait_for
from cowdetect.store import Store

if os.environ.get("COWDETECT_REQUIRE_RAY") != "1":
    pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt); "
                                      "COWDETECT_REQUIRE_RAY=1 makes this a failure")

from test_cli import cli  # noqa: E402 - after the skip: Ray tests need nothing of it without Ray

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "COWDETECT_THREADS": "1"}


def write_video(path: Path, seed: int, seconds: float) -> Path:
    from cowdetect.demo import render_video
    from cowdetect.video import write_video as write

    write((frame for frame, _ in render_video(seed, 160, 96, 10, seconds)), path, fps=10)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ray-videos")
    return [write_video(folder / f"cows{seed}.mp4", seed, 3.0) for seed in (1, 2)]


def mot_of(data: Path, run_id: int) -> str:
    return (data / "runs" / f"run-{run_id}" / "tracks.mot.txt").read_text()


def test_track_many_equals_plain_track_of_each_video(tmp_path, videos):
    data = tmp_path / "data"
    many = cli("track-many", *map(str, videos), "--model", "pretrained", "--workers", "2", "--json",
               "--out", str(tmp_path / "out"), data_dir=data)
    assert many.returncode == 0, many.stderr
    report = json.loads(many.stdout)
    assert report["status"] == "done" and [v["video"] for v in report["videos"]] == list(map(str, videos))
    store = Store(data)
    assert store.run(report["run_id"]).kind == "track-many"
    for video, summary in zip(videos, report["videos"]):
        plain = cli("track", str(video), "--model", "pretrained", "--json", "--out", str(tmp_path / "plain.mp4"),
                    data_dir=tmp_path / "elsewhere")  # detects every frame itself
        assert plain.returncode == 0, plain.stderr
        alone = json.loads(plain.stdout)
        # the same keys as track --json, the same tracks
        assert set(summary) - {"video"} == set(alone)
        assert mot_of(data, summary["run_id"]) == mot_of(tmp_path / "elsewhere", alone["run_id"])
        assert summary["tracks"] == alone["tracks"] and summary["frames"] == alone["frames"] == 30
        assert Path(summary["out"]).read_bytes()[4:8] == b"ftyp"
        assert store.run(summary["run_id"]).status == "done"
        # the detections Ray's task returned are kept: a plain track here detects nothing again
        again = cli("track", str(video), "--model", "pretrained", "--out", str(tmp_path / "again.mp4"), data_dir=data)
        assert again.returncode == 0 and "10 frames already detected" in again.stderr, again.stderr  # every 3rd
    assert sum(s["tracks"] for s in report["videos"]) > 0


def test_worker_killed_mid_video_is_run_again(tmp_path):
    data = tmp_path / "data"
    video = write_video(tmp_path / "long.mp4", 4, 3.0)  # 30 frames, every one detected: seconds of work
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "track-many", str(video), "--model", "pretrained",
                             "--detect-every", "1", "--workers", "1", "--json", "--data-dir", str(data)],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    line = wait_for(lambda: next((x for x in lines if "runs on the Ray worker" in x), None), 120, "a worker")
    os.kill(int(line.rsplit("pid ", 1)[1]), signal.SIGKILL)
    out = proc.stdout.read()  # not communicate(): it would read stderr too, taking lines from the reader
    proc.wait(timeout=300)
    reader.join(30)
    assert proc.returncode == 0, "".join(lines)
    assert any("ended; Ray runs it again" in x for x in lines), "".join(lines)
    report = json.loads(out)["videos"][0]
    assert report["status"] == "done" and report["frames"] == 30
    plain = cli("track", str(video), "--model", "pretrained", "--detect-every", "1", "--json",
                "--out", str(tmp_path / "plain.mp4"), data_dir=tmp_path / "elsewhere")
    assert mot_of(data, report["run_id"]) == mot_of(tmp_path / "elsewhere", json.loads(plain.stdout)["run_id"])


def test_stop_ends_every_video_and_writes_no_half_run(tmp_path):
    from cowdetect import jobs

    data = tmp_path / "data"
    files = [write_video(tmp_path / f"v{seed}.mp4", seed, 3.0) for seed in (5, 6)]
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "track-many", *map(str, files), "--model",
                             "pretrained", "--detect-every", "1", "--workers", "1", "--json", "--data-dir", str(data)],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = wait_for(lambda: (data / "cowdetect.sqlite").exists() and Store(data), 60, "the data folder")
    parent = wait_for(lambda: next((r for r in store.runs("track-many") if r.iteration > 0), None), 120, "progress")
    jobs.request_stop(store, parent.id)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert json.loads(out)["status"] == "stopped"
    children = jobs.track_many_children(store, parent.id)
    assert len(children) == 2
    assert store.run(parent.id).status == "stopped" and {c.status for c in children} == {"stopped"}
    for child in children:  # a stopped video keeps no files but its progress preview
        assert not (data / "runs" / f"run-{child.id}" / "tracks.mot.txt").exists()
    # and it resumes: every video is tracked the second time
    resumed = subprocess.run([sys.executable, "-m", "cowdetect", "track-many", "--resume", str(parent.id), "--json",
                              "--data-dir", str(data)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [v["status"] for v in json.loads(resumed.stdout)["videos"]] == ["done", "done"]
    assert store.run(parent.id).status == "done"
    assert all(store.run(c.id).status == "done" and store.run(c.id).iteration == 30 for c in children)


def test_prelabel_on_ray_suggests_what_prelabel_does(tmp_path, videos, monkeypatch):
    data = tmp_path / "data"
    for video in videos:
        assert cli("import-video", str(video), "--count", "12", "--min-change", "0", data_dir=data).returncode == 0
    store = Store(data)
    # a Ray named in the environment is not joined: 'local' is a new Ray on this machine
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")
    on_ray = cli("prelabel", "--unlabeled", "--model", "pretrained", "--ray", "local", "--workers", "2",
                 "--score-threshold", "0.3", "--json", data_dir=data)
    assert on_ray.returncode == 0, on_ray.stderr
    found = {i.id: store.suggestions(i.id).boxes for i in store.images() if store.suggestions(i.id)}
    assert len(found) == 24 and json.loads(on_ray.stdout)["images"] == 24
    local = cli("prelabel", "--unlabeled", "--model", "pretrained", "--score-threshold", "0.3", "--json",
                data_dir=data)
    assert local.returncode == 0, local.stderr
    for image_id, boxes in found.items():
        again = store.suggestions(image_id).boxes
        assert again.xyxy.shape == boxes.xyxy.shape and np.allclose(again.xyxy, boxes.xyxy, atol=1e-3)
        assert again.class_id.tolist() == boxes.class_id.tolist()
    assert sum(len(b) for b in found.values()) == json.loads(on_ray.stdout)["boxes"] > 0


def test_unreachable_cluster_is_one_line_within_seconds_and_stores_nothing(tmp_path, videos):
    data = tmp_path / "data"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cowdetect", "track-many", str(videos[0]), "--ray",
                             "127.0.0.1:9", "--data-dir", str(data)], env=ENV, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < 30
    assert result.stderr.startswith("error: no Ray cluster answers at 127.0.0.1:9") and \
        len(result.stderr.splitlines()) == 1, result.stderr
    assert not data.exists()  # refused before the data folder is made
    # something else listening there (Ray itself would retry for minutes): not a Ray head, said at once
    with socket.create_server(("127.0.0.1", 0)) as server:
        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        threading.Thread(target=answer, daemon=True).start()
        port = server.getsockname()[1]
        other = cli("track-many", str(videos[0]), "--ray", f"127.0.0.1:{port}", data_dir=data)
    assert other.returncode == 2 and "not a Ray cluster's head" in other.stderr, other.stderr
    assert not data.exists()
    # prelabel --ray: the same check, before any work
    unreachable = cli("prelabel", "--unlabeled", "--ray", "127.0.0.1:9", data_dir=data)
    assert unreachable.returncode == 2 and unreachable.stderr.startswith("error: no Ray cluster answers"), \
        unreachable.stderr
    assert not data.exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers: expected a whole number from 1 to 1024"),
    (["--gpu-fraction", "2"], "--gpu-fraction: expected a number from 0 to 1"),
    (["--ray", "nowhere"], "--ray: expected HOST:PORT"),
    (["--ray", "http://10.0.0.5:6379"], "--ray: expected HOST:PORT"),
    (["--ray", "ray://10.0.0.5:10001"], "--ray: expected HOST:PORT"),  # Ray Client needs grpcio: not installed
    (["--ray", "auto"], "--ray: expected HOST:PORT"),
    (["--ray", ""], "--ray: expected HOST:PORT"),  # an unset variable: never a silent local Ray
    (["--ray", "user@10.0.0.5:6379"], "--ray: expected HOST:PORT"),
    (["--ray", "10.0.0.5:99999"], "--ray: expected HOST:PORT"),
    (["--workers", "999"], "workers: expected 1 to"),
    (["--threads-per-task", "0"], "--threads-per-task: expected"),
    (["--tiles", "0x3"], "tiles"),
    pytest.param(["--gpu-fraction", "0.5"], "this machine (a local Ray) has no GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_bad_cluster_options_are_refused_before_any_work(tmp_path, videos, args, message):
    data = tmp_path / "data"
    result = cli("track-many", str(videos[0]), *args, data_dir=data)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert not (data / "videos").exists()


def test_same_video_twice_is_refused(tmp_path, videos):
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(videos[0].read_bytes())
    result = cli("track-many", str(videos[0]), str(copy), data_dir=tmp_path / "data")
    assert result.returncode == 2 and "are the same video" in result.stderr, result.stderr


def test_without_ray_the_message_says_how_to_install(monkeypatch, tmp_path, videos):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where it is not installed
    result = cli("track-many", str(videos[0]), data_dir=tmp_path / "data")
    assert result.returncode == 2 and "pip install -r requirements-ray.txt" in result.stderr, result.stderr
    assert not (tmp_path / "data" / "videos").exists()


def test_only_an_admin_sends_work_to_another_cluster(tmp_path, videos, monkeypatch):
    """The job ships videos and the model to whatever answers at the address: the library refuses a
    trainer any cluster but the server's own Ray and the one the admin named in COWDETECT_RAY_ADDRESS."""
    from cowdetect import jobs
    from cowdetect.accounts import PermissionDenied, User
    from cowdetect.cluster import allowed_address

    store = Store(tmp_path / "data")
    video, _ = jobs.add_video(store, videos[0].read_bytes(), videos[0].name)
    store.add_user("ada", "admin", "admin password")
    store.as_user(User("ada", "admin")).add_user("tim", "trainer", "trainer password")
    trainer, admin = store.as_user(User("tim", "trainer")), store.as_user(User("ada", "admin"))
    monkeypatch.delenv("COWDETECT_RAY_ADDRESS", raising=False)
    with pytest.raises(PermissionDenied, match="only an admin"):
        jobs.track_many_settings(trainer, [video.id], model="pretrained", ray="10.1.2.3:6379")
    with pytest.raises(PermissionDenied, match="only an admin"):
        jobs.prelabel_settings(trainer, model="pretrained", unlabeled=True, ray="10.1.2.3:6379")
    assert jobs.track_many_settings(trainer, [video.id], model="pretrained")["cluster"]["address"] is None
    assert allowed_address(admin, "10.9.9.9:6379") == "10.9.9.9:6379"
    monkeypatch.setenv("COWDETECT_RAY_ADDRESS", "10.1.2.3:6379")
    assert allowed_address(trainer, "10.1.2.3:6379") == "10.1.2.3:6379"
    with pytest.raises(PermissionDenied, match="only an admin"):
        allowed_address(trainer, "10.1.2.4:6379")
    monkeypatch.setenv("COWDETECT_RAY_ADDRESS", "not an address")
    with pytest.raises(ValueError, match="COWDETECT_RAY_ADDRESS: expected HOST:PORT"):
        allowed_address(trainer, "10.1.2.4:6379")


def test_track_page_tracks_several_videos_on_ray(tmp_path, videos, monkeypatch):
    """The Track page's "Several videos (Ray)": a real background run on a local Ray, then its table."""
    from conftest import open_page, statuses_until_done
    from cowdetect import jobs

    store = Store(tmp_path / "data")
    ids = [jobs.add_video(store, v.read_bytes(), v.name)[0].id for v in videos]
    at = open_page("track", store, monkeypatch)
    at.radio(key="track_source").set_value("Several videos (Ray)").run()
    at.multiselect(key="many_videos").set_value(ids)
    at.selectbox(key="many_model").select("pretrained")
    at.number_input(key="many_workers").set_value(2)
    next(b for b in at.button if b.label == "Track on Ray").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    run = store.runs("track-many")[0]
    assert run.pid and len(run.params["videos"]) == 2
    assert statuses_until_done(store, run.id, timeout=240)[-1] == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    assert list(table["status"]) == ["done", "done"] and list(table["video"]) == [v.name for v in videos]


@pytest.mark.parametrize("address, message", [
    ("nowhere", "--ray: expected HOST:PORT"),
    ("ray://10.0.0.5:10001", "--ray: expected HOST:PORT"),
    ("127.0.0.1:9", "no Ray cluster answers at 127.0.0.1:9"),
])
def test_track_page_says_a_bad_cluster_address_in_one_line_and_stores_no_run(tmp_path, videos, monkeypatch,
                                                                             address, message):
    from conftest import open_page
    from cowdetect import jobs

    store = Store(tmp_path / "data")
    ids = [jobs.add_video(store, v.read_bytes(), v.name)[0].id for v in videos]
    at = open_page("track", store, monkeypatch)
    at.radio(key="track_source").set_value("Several videos (Ray)").run()
    at.multiselect(key="many_videos").set_value(ids)
    at.text_input(key="many_ray").input(address)
    next(b for b in at.button if b.label == "Track on Ray").click().run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0], errors
    assert store.runs() == []


def test_a_broken_video_fails_alone_and_one_videos_stop_cancels_its_task(tmp_path, videos):
    """Three videos, one task at a time: the second's stored file is broken (its run fails with the
    decoder's reason, naming the video), the third is stopped on its own while it runs; the first is
    done. The track-many run then ends failed, naming the broken one."""
    from cowdetect import jobs

    data = tmp_path / "data"
    third = write_video(tmp_path / "third.mp4", 8, 6.0)
    store = Store(data)
    ids = [jobs.add_video(store, path.read_bytes(), path.name)[0].id for path in (*videos, third)]
    broken = store.video(ids[1]).path
    broken.write_bytes(broken.read_bytes()[:2000])  # cut after the header: no frame decodes
    run_id = jobs.create_track_many_run(store, jobs.track_many_settings(store, ids, model="pretrained", workers=1,
                                                                       detect_every=1))
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "worker", str(run_id), "--data-dir", str(data)],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = wait_for(lambda: next((c for c in jobs.track_many_children(store, run_id)
                                  if c.params["video_id"] == ids[2] and c.status == "running" and c.iteration > 0),
                                 None), 240, "the third video running")
    jobs.request_stop(store, last.id)
    _, err = proc.communicate(timeout=240)
    first, second, stopped = jobs.track_many_children(store, run_id)
    assert (first.status, second.status, stopped.status) == ("done", "failed", "stopped"), err
    assert videos[1].name in second.error, second.error  # the user's name of it, not a scratch file's
    assert not (data / "runs" / f"run-{stopped.id}" / "tracks.mot.txt").exists()
    parent = store.run(run_id)
    assert parent.status == "failed" and f"run {second.id}" in parent.error


def test_sigterm_of_the_driver_interrupts_the_run_and_its_videos(tmp_path):
    """Ray installs its own SIGTERM handler: the driver puts cowdetect's back, so a terminated job
    ends interrupted (resumable), not failed with a C++ abort."""
    from cowdetect import jobs

    data = tmp_path / "data"
    store = Store(data)
    ids = [jobs.add_video(store, write_video(tmp_path / f"v{seed}.mp4", seed, 3.0).read_bytes(), f"v{seed}.mp4")[0].id
           for seed in (9, 10)]
    run_id = jobs.create_track_many_run(store, jobs.track_many_settings(store, ids, model="pretrained", workers=1,
                                                                       detect_every=1))
    # the app's worker process (the page's Start), which turns SIGTERM into an orderly end
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "worker", str(run_id), "--data-dir", str(data)],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parent = wait_for(lambda: (run := store.run(run_id)).iteration > 0 and run, 120, "progress")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert store.run(parent.id).status == "interrupted"
    assert {c.status for c in jobs.track_many_children(store, parent.id)} == {"interrupted"}


HELD = """
import os, signal, sys
from cowdetect import cluster
ray = cluster.import_ray()
def mine(signum, frame):
    pass
signal.signal(signal.SIGTERM, mine)
before = signal.getsignal(signal.SIGTERM)
exits = lambda signum, frame: sys.exit(signum)
for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT: Ctrl+C, which would raise wherever Python is
    with cluster._signals_held(ray) as signalled:
        ray._private.utils.set_sigterm_handler(exits)  # what ray.init does first
        os.kill(os.getpid(), sig)
        for _ in range(10**6):  # Python runs a handler between bytecodes, so within a few of them
            if signalled:
                break
        print(signalled, signal.getsignal(signal.SIGTERM) is exits)
print(signal.getsignal(signal.SIGTERM) is mine, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
try:
    with cluster._signals_held(ray) as signalled:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**6):
            if signalled:
                break
        os.kill(os.getpid(), signal.SIGTERM)  # a second: at once, not when Ray has started
        for _ in range(10**6):
            pass
    print("held twice")
except KeyboardInterrupt:
    print("second signal raised", signal.getsignal(signal.SIGTERM) is mine)
"""


def test_a_sigterm_or_ctrl_c_while_ray_starts_is_held_then_our_handlers_are_back():
    """Ray's handler exits with 15 wherever Python is, and a fork hook it once landed in swallowed it
    (CI: the run went on to the end); Ctrl+C the same. While Ray starts a signal is only noted;
    then ours are back."""
    out = subprocess.run([sys.executable, "-c", HELD], env=ENV, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == [f"[{int(signal.SIGTERM)}] False", f"[{int(signal.SIGINT)}] False",
                                          "True True", "second signal raised True"], out.stdout


def test_sigterm_while_ray_starts_interrupts_the_run(tmp_path):
    """While ray.init runs, Ray's own SIGTERM handler would exit with 15 wherever Python is: the run
    ended "failed" with the error "15", or (in a fork hook) went on to the end. Now it ends
    interrupted (resumable), exit 130. The signal is sent once Ray's session folder exists and
    before the run has any progress: Ray is starting."""
    import shutil
    import tempfile

    from cowdetect.demo import demo_image

    store = Store(tmp_path / "data")
    for i in range(2):
        store.add_image(demo_image(7, "train", i)[0], f"d{i}.jpg")
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "prelabel", "--unlabeled", "--model", "pretrained",
                                 "--ray", "local", "--workers", "1", "--data-dir", str(store.data_dir)],
                                env={**ENV, "RAY_TMPDIR": str(ray_tmp)}, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(ray_tmp.glob("ray/session_*")), 120, "Ray starting")
        run = store.runs("prelabel")[0]
        assert run.iteration == 0  # nothing predicted yet: the signal lands while Ray starts
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err)
        assert store.run(run.id).status == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_resume_takes_no_other_settings_and_out_names_never_collide():
    from cowdetect.cli_ray import _out_names

    for args in (["--workers", "2"], ["--model", "pretrained"], ["--detect-every", "1"], ["x.mp4"]):
        result = cli("track-many", "--resume", "1", *args)
        assert result.returncode == 2 and "a resumed run keeps" in result.stderr, result.stderr
    assert _out_names(["x/a.mp4", "y/a.mp4", "a-2.mp4", "b.mov"]) == [
        "a.tracked.mp4", "a-2.tracked.mp4", "a-2-2.tracked.mp4", "b.tracked.mp4"]


def test_a_video_run_another_process_runs_is_left_to_it(tmp_path, videos):
    """Resuming a track-many run whose one video is done and whose other is being run by another live
    process (resumed alone on its page) takes neither: nothing for Ray to do, no second writer."""
    from cowdetect import jobs

    store = Store(tmp_path / "data")
    ids = [jobs.add_video(store, v.read_bytes(), v.name)[0].id for v in videos]
    settings = jobs.track_many_settings(store, ids, model="pretrained")
    run_id = jobs.create_track_many_run(store, settings)
    done, busy = (store.add_run("track", {**video, "parent": run_id})[0] for video in settings["videos"])
    store.update_run(done, status="done", iteration=30)
    other = subprocess.Popen(["sleep", "60"])
    try:
        store.update_run(busy, status="running", pid=other.pid)
        lines: list[str] = []
        run = jobs.run_track_many(store, run_id, log=lines.append)
        assert f"run {run_id}: run {busy} is being run by process {other.pid}; left to it" in lines
        assert store.run(busy).status == "running" and store.run(busy).pid == other.pid
        assert run.status == "stopped" and "1 of 2 videos done" in run.error
    finally:
        other.kill()
        other.wait()
