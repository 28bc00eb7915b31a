"""The command line. Most cases call ``cowdetect.cli.main`` in this process (the same parser and
handlers, without paying torch's import in a new process each time); two run ``python -m cowdetect``
for real: an error's exit status, single line and missing traceback, and a run killed with SIGKILL."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FRCNN, ROOT
from cowdetect.cli import main

TINY_BASE = f"untrained:{FRCNN}"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, data_dir: Path | None = None) -> Result:
    """``python -m cowdetect ARGS --data-dir DATA_DIR``, run in this process: (status, stdout, stderr)."""
    extra = ["--data-dir", str(data_dir)] if data_dir else []
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, *extra])
    return Result(code, out.getvalue(), err.getvalue())


def cli_process(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """``python -m cowdetect`` in a new process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cowdetect", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def files_of(data: Path) -> list[str]:
    return sorted(p.name for p in data.rglob("*") if p.is_file() and "sqlite" not in p.name)


def assert_one_error_line(err: str, message: str) -> None:
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and re.search(message, err), err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """demo → train (an untrained tiny Faster R-CNN, 2 iterations) once for the module."""
    data = tmp_path_factory.mktemp("cli") / "data"
    demo = cli("demo", "--train", "6", "--val", "0", "--test", "3", "--size", "128x96", "--no-video", "--json",
               data_dir=data)
    assert demo.returncode == 0, demo.stderr
    train = cli("train", "--model", TINY_BASE, "--iterations", "2", "--name", "tiny", "--json", data_dir=data)
    assert train.returncode == 0, train.stderr
    return data, json.loads(demo.stdout), json.loads(train.stdout)


def test_demo_train_models(trained):
    data, demo, train = trained
    assert demo["counts"]["splits"]["train"] == 6 and demo["counts"]["splits"]["test"] == 3
    assert train["model"] == "tiny" and train["iterations"] == 2 and Path(train["checkpoint"]).is_file()
    assert train["status"] == "done" and train["iteration"] == 2 and train["base"] == f"untrained {FRCNN}"
    assert Path(train["checkpoint"]).is_relative_to(data)
    models = json.loads(cli("models", "--json", data_dir=data).stdout)
    assert [(m["name"], m["architecture"]) for m in models] == [("tiny", FRCNN)]


def test_evaluate_json(trained):
    data, _, _ = trained
    out = cli("evaluate", "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("map", "map_50", "map_75", "per_class", "per_image"):
        assert key in result
    assert result["model"] == "tiny (#1)" and result["split"] == "test" and result["num_images"] == 3
    assert len(result["per_image"]) == 3


def test_predict_json_and_drawing(trained, tmp_path):
    data, _, _ = trained
    image = next((data / "images").rglob("*.jpg"))
    out = cli("predict", str(image), "--json", "--score-threshold", "0", "--out", str(tmp_path / "o.png"),
              data_dir=data)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) >= {"pred_classes", "class_names", "pred_boxes", "scores"}
    assert len(result["pred_boxes"]) == len(result["scores"]) == len(result["pred_classes"])
    assert (tmp_path / "o.png").is_file()


ERRORS = [
    (lambda d, t: ["predict", str(t / "notes.jpg")], "not an image"),
    (lambda d, t: ["predict", str(t / "empty.jpg")], "empty"),
    (lambda d, t: ["predict", str(t / "missing.jpg")], "no such file"),
    (lambda d, t: ["evaluate", "--model", "nope"], "no version called 'nope'"),
    (lambda d, t: ["evaluate", "--split", "val"], "no labeled images"),
    (lambda d, t: ["predict", str(t / "notes.jpg"), "--model", str(t / "fake.pt")], "not an image|checkpoint"),
    (lambda d, t: ["train", "--model", f"untrained:{FRCNN}", "--name", "123"], "name: expected letters"),
    (lambda d, t: ["train", "--model", f"untrained:{FRCNN}", "--keep-start", "2"], "--keep-start: expected a number from 0 to 1"),
    (lambda d, t: ["train", "--model", f"untrained:{FRCNN}", "--backbone-lr", "-1"], "--backbone-lr: expected"),
    (lambda d, t: ["train", "--model", f"untrained:{FRCNN}", "--tile-crops", "nan"], "--tile-crops: expected"),
]


def bad_files(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("these are notes\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "fake.pt").write_text("not a checkpoint")


@pytest.mark.parametrize("make_args, message", ERRORS)
def test_errors_are_one_line_and_store_nothing(trained, tmp_path, make_args, message):
    data, _, _ = trained
    bad_files(tmp_path)
    before, runs = files_of(data), store_runs(data)
    out = cli(*make_args(data, tmp_path), data_dir=data)  # an uncaught exception would fail the test here
    assert out.returncode == 2
    assert_one_error_line(out.stderr, message)
    assert files_of(data) == before and store_runs(data) == runs


def test_error_in_a_real_process_is_exit_2_one_line_no_traceback(trained, tmp_path):
    """What the in-process cases cannot show: `python -m cowdetect` exits with main's status and
    prints the error, not a traceback."""
    data, _, _ = trained
    bad_files(tmp_path)
    before = files_of(data)
    out = cli_process("predict", str(tmp_path / "notes.jpg"), data_dir=data)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, "not an image")
    assert out.stdout == "" and files_of(data) == before


def test_train_on_empty_store_and_unknown_architecture(tmp_path):
    out = cli("train", "--iterations", "1", data_dir=tmp_path / "empty")
    assert out.returncode == 2
    assert_one_error_line(out.stderr, "has 0 labeled images; label at least 5 more")
    out = cli("train", "--model", "untrained:yolo", data_dir=tmp_path / "empty")
    assert out.returncode == 2 and "fasterrcnn_resnet50_fpn" in out.stderr
    out = cli("train", "--model", "12x", data_dir=tmp_path / "empty")  # the message shows the spec grammar
    assert out.returncode == 2 and "'coco:ARCH'" in out.stderr and "'#ID' or 'ID'" in out.stderr
    assert store_runs(tmp_path / "empty") == []


def store_runs(data: Path) -> list:
    from cowdetect.store import Store
    return Store(data).runs()


def test_evaluate_without_trained_model_uses_pretrained_and_says_why(tmp_path):
    import torch
    from cowdetect.models import coco_label, pretrained_architecture
    data = tmp_path / "d"
    assert cli("demo", "--train", "1", "--val", "0", "--test", "2", "--size", "160x120", "--no-video",
               data_dir=data).returncode == 0
    out = cli("evaluate", "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    architecture = pretrained_architecture(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    label = coco_label("pretrained", architecture)
    assert f"model: {label} with COCO weights: " in out.stderr  # which, and why
    assert json.loads(out.stdout)["model"] == label
    assert (data / "weights" / "ssd_mobilenet_v2_coco.pt").is_file()  # converted into the data folder


def test_runs_and_resume(trained):
    data, _, train = trained
    runs = json.loads(cli("runs", "--json", data_dir=data).stdout)
    assert runs[0]["id"] == train["run_id"] and runs[0]["status"] == "done"
    assert set(runs[0]) >= {"id", "status", "iteration", "checkpoint_iteration"}
    out = cli("train", "--resume", str(train["run_id"]), data_dir=data)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, "is done; start a new run")
    out = cli("train", "--resume", "999", data_dir=data)
    assert out.returncode == 2
    assert_one_error_line(out.stderr, "run 999: no such run")


def test_interrupted_cli_run_resumes(tmp_path):
    """A CLI run killed mid-way (as by Ctrl+C or a crash) resumes from its checkpoint."""
    import signal
    import time

    from cowdetect.store import Store

    data = tmp_path / "d"
    assert cli("demo", "--train", "6", "--val", "0", "--test", "0", "--size", "128x96", "--no-video",
               data_dir=data).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "train", "--data-dir", str(data), "--model",
                             TINY_BASE, "--iterations", "8", "--checkpoint-every", "2", "--eval-every", "0",
                             "--threads", "1"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = Store(data)
        deadline = time.monotonic() + 180
        while not (store.runs() and store.runs()[0].checkpoint_iteration >= 2):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    runs = json.loads(cli("runs", "--json", data_dir=data).stdout)
    killed_at = runs[0]["checkpoint_iteration"]
    assert runs[0]["status"] == "interrupted" and 2 <= killed_at < 8
    out = cli("train", "--resume", str(runs[0]["id"]), "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert f"iterations {killed_at}→8" in out.stderr  # from the checkpoint, not from the start
    assert result["status"] == "done" and result["iteration"] == 8 and result["model"]


@pytest.mark.parametrize("size", ["640", "axb", "10x10"])
def test_demo_bad_size_stores_nothing(tmp_path, capsys, size):
    assert main(["demo", "--size", size, "--no-video", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "size" in err
    assert not list((tmp_path / "d").rglob("*.jpg"))


# -- import-video ----------------------------------------------------------------------


@pytest.fixture
def cows_mp4(tmp_path) -> Path:
    """A 2 s, 160x96, 10 fps video of the demo cows, as a file (not stored)."""
    from cowdetect.demo import render_video
    from cowdetect.video import write_video

    path = tmp_path / "cows.mp4"
    write_video((frame for frame, _ in render_video(0, 160, 96, 10, 2.0)), path, fps=10)
    return path


IMPORT_VIDEO_ERRORS = [
    (["--every", "0"], "every: expected a positive number"),
    (["--every", "nan"], "every: expected a positive number"),
    (["--count", "0"], "--count: expected a whole number from 1"),
    (["--every", "1", "--count", "3"], "got both"),
    (["--split", "holdout"], "split: expected one of"),
    (["--min-change", "-1"], "--min-change: expected a whole number from 0 to 64"),
    (["--min-change", "65"], "--min-change: expected a whole number from 0 to 64"),
    (["VIDEO=notes.mp4"], "not a video file"),
    (["VIDEO=missing.mp4"], "no such file"),
    (["VIDEO=notes.txt"], "expected a video file"),
    (["VIDEO=demo"], "no demo video in this data folder"),
]


@pytest.mark.parametrize("extra, message", IMPORT_VIDEO_ERRORS)
def test_import_video_bad_input_is_one_line_and_stores_nothing(cows_mp4, tmp_path, extra, message):
    (tmp_path / "notes.mp4").write_text("these are notes\n")
    (tmp_path / "notes.txt").write_text("these are notes\n")
    video, extra = str(cows_mp4), list(extra)
    if extra[0].startswith("VIDEO="):
        name = extra.pop(0)[len("VIDEO="):]
        video = name if name == "demo" else str(tmp_path / name)
    data = tmp_path / "data"
    out = cli("import-video", video, *extra, data_dir=data)
    assert out.returncode == 2 and out.stdout == ""
    assert_one_error_line(out.stderr, message)
    assert files_of(data) == []  # not even the video


def test_import_video_json_then_again_adds_nothing(cows_mp4, tmp_path):
    data = tmp_path / "data"
    out = cli("import-video", str(cows_mp4), "--every", "0.5", "--min-change", "0", "--split", "train", "--json",
              data_dir=data)
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout)
    assert first["added"] == 4 and first["skipped"] == [] and first["video_id"] == 1 and len(first["images"]) == 4
    assert "Added cows.mp4." in out.stderr
    again = cli("import-video", str(cows_mp4), "--every", "0.5", "--json", data_dir=data)
    result = json.loads(again.stdout)
    assert result["added"] == 0 and result["video_id"] == 1 and result["images"] == first["images"]
    assert [s["frame"] for s in result["skipped"]] == [0, 5, 10, 15]
    assert "already stored (video 1)" in again.stderr and "skipped frame 5: already imported as image" in again.stderr
    human = cli("import-video", str(cows_mp4), "--count", "2", data_dir=data)
    assert human.returncode == 0 and human.stdout == "Added 0 frames of video 1, skipped 2.\n"


def test_import_video_from_run_adds_the_frames_where_tracking_broke(video_store, tmp_path):
    from conftest import run_with_switch
    from cowdetect.demo import render_video
    from cowdetect.video import write_video

    other = tmp_path / "other.mp4"  # another video than the one the run tracked
    write_video((frame for frame, _ in render_video(1, 160, 96, 10, 1.0)), other, fps=10)
    run_id, _ = run_with_switch(video_store)
    wanted = [f["frame"] for f in video_store.run(run_id).metrics["to_label"]]
    data = video_store.data_dir
    before = files_of(data)
    for extra, message in ((["--every", "2"], "leave out --every, --count and --min-change"),
                           ([], "not the video run")):
        out = cli("import-video", str(other), "--from-run", str(run_id), *extra, data_dir=data)
        assert out.returncode == 2 and out.stdout == ""
        assert_one_error_line(out.stderr, message)
    assert files_of(data) == before  # nothing stored, not even the other video
    out = cli("import-video", "demo", "--from-run", str(run_id), "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["added"] == len(wanted) and result["suggested"] == len(wanted)
    assert sorted(video_store.image(i).frame_index for i in result["images"]) == wanted
    assert set(video_store.image_states(result["images"]).values()) == {"suggested"}


def test_commands_without_a_model_do_not_load_torch(tmp_path):
    """Building the parser reads every command's arguments (the tiles grammar too): none of that
    may import torch, or every `runs`, `import-video` and frame-import worker pays ~5 s for it."""
    code = ("import sys; from cowdetect.cli import main; "
            f"main(['runs', '--data-dir', {str(tmp_path / 'data')!r}]); "
            "sys.exit(int('torch' in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, "torch was imported: " + done.stderr[-500:]


def test_two_identical_train_commands_never_run_one_run_twice_at_once(job_store_small):
    """Measured (issue 14): two `train` commands with identical settings started together make one
    run and one model (the store returns the queued run to the second; a second process cannot take
    a run a live one holds), or two runs one after the other (the device is claimed under SQLite's
    write lock) — never the same run twice in parallel."""
    data = job_store_small.data_dir
    command = [sys.executable, "-m", "cowdetect", "train", "--data-dir", str(data), "--model", TINY_BASE,
               "--iterations", "3", "--checkpoint-every", "0", "--eval-every", "0", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COWDETECT_THREADS": "1"}
    procs = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        ends = [proc.communicate(timeout=600) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    codes = sorted(proc.returncode for proc in procs)
    runs, models = job_store_small.runs("train"), job_store_small.models()
    assert all(run.status == "done" for run in runs), runs
    if len(runs) == 1:  # one run, one model; the second command ran it or was told who does
        assert len(models) == 1 and codes in ([0, 0], [0, 2]), ends
        for (_, err), code in zip(ends, (proc.returncode for proc in procs)):
            if code == 2:
                assert_one_error_line(err.splitlines()[-1] + "\n", f"run {runs[0].id} is (already being run|done)")
    else:  # two runs, in sequence: one started after the other finished
        assert len(runs) == 2 and len(models) == 2 and codes == [0, 0], ends
        first, second = sorted(runs, key=lambda run: run.started_at)
        assert first.finished_at <= second.started_at, (first, second)


def test_track_demo_counts_lines_and_zones_saves_them_and_reuses_them(video_store):
    """`track demo --line --zone --json`: the counts are the run's own tracks counted again (the hook saw
    every frame), the lines and zones are kept with the video, and a re-run with other tracker settings
    and no --line counts on them, reusing the kept detections. (The untrained tiny model's boxes stand
    still: the zone fills, no cow crosses; real crossings: the pretrained SSD test below.)"""
    from cowdetect import jobs
    from cowdetect.counting import Counter, geometry_from_dict, replay
    from cowdetect.mot import read_mot

    data = video_store.data_dir
    result = cli("track", "demo", "--out", str(data.parent / "o.mp4"), "--model", "tiny", "--score-threshold", "0.3",
                 "--detect-every", "3", "--line", "gate=80,0,80,96", "--zone", "0,40,77,40,77,96,0,96", "--json",
                 data_dir=data)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (line,), (zone,) = report["lines"], report["zones"]
    assert line["name"] == "gate" and line["points"] == [[80, 0], [80, 96]] and zone["name"] == "zone1"
    assert set(line) == {"name", "points", "forward", "backward", "crossings"}
    assert zone["max_inside"] >= 1 and zone["dwell"] and all(d["seconds"] > 0 for d in zone["dwell"])
    run = video_store.runs("track")[0]
    files = jobs.track_outputs(video_store, run.id)
    # (the zone's edge is off the untrained boxes' grid: the MOT file's 2 decimals must not move a box across it)
    again = replay(Counter(*geometry_from_dict(run.params["geometry"])), read_mot(files["mot"]), 10.0, 20).summary()
    assert again["zones"][0]["dwell"] == zone["dwell"] and again["zones"][0]["max_inside"] == zone["max_inside"]
    assert files["counts"].read_text().splitlines()[0] == "kind,name,event,track_id,frame,time_s"
    video = video_store.videos()[0]
    assert video.geometry == run.params["geometry"]
    rerun = cli("track", "demo", "--out", str(data.parent / "o2.mp4"), "--model", "tiny", "--distance", "centroid",
                "--score-threshold", "0.3", data_dir=data)
    assert rerun.returncode == 0, rerun.stderr
    assert re.search(r"^line gate \(80,0 -> 80,96\): \d+ forward, \d+ backward$", rerun.stdout, re.M)
    assert re.search(r"^zone zone1: at most \d+ inside at once; time inside: #", rerun.stdout, re.M)
    latest = video_store.runs("track")[0]
    assert latest.params["geometry"] == video.geometry
    summary = latest.metrics["summary"]  # the detection cache: every detected frame read back, none detected again
    assert summary["reused_frames"] == summary["detected_frames"] > 0, summary


def test_track_demo_with_the_pretrained_ssd_counts_the_cows_that_cross(tmp_path):
    """A real crossing count: the pretrained COCO SSD tracks the demo cows (640x360, 4 s at 10 fps) over a
    gate three of them walk across (truth: cow 3 backward at frame 12, cows 5 and 2 forward at 18 and 33).
    The counts are > 0, equal the run's own tracks counted again (replay of its MOT file), and every
    counted crossing is a true one (same way, within 1 s): a wrong direction, a crossing stamped late or a
    jitter double count fails. A re-run reads every detection from the cache."""
    from cowdetect import jobs
    from cowdetect.counting import Counter, replay
    from cowdetect.demo import make_demo_video
    from cowdetect.geometry import Line
    from cowdetect.mot import read_mot
    from cowdetect.store import Store

    store = Store(tmp_path / "data")
    make_demo_video(store, seconds=4.0, fps=10, size=(640, 360))
    args = ["track", "demo", "--model", "pretrained", "--detect-every", "2", "--line", "gate=480,0,480,360", "--json"]
    result = cli(*args, "--out", str(tmp_path / "o.mp4"), data_dir=store.data_dir)
    assert result.returncode == 0, result.stderr
    (line,) = json.loads(result.stdout)["lines"]
    assert line["forward"] + line["backward"] > 0, line
    run, video = store.runs("track")[0], store.videos()[0]
    gate = Line("gate", 480, 0, 480, 360)
    mine = replay(Counter([gate]), read_mot(jobs.track_outputs(store, run.id)["mot"]), video.fps, video.frames)
    assert mine.summary()["lines"][0] == line
    truth_table = read_mot(video.gt_path)
    (truth,) = replay(Counter([gate]), truth_table[truth_table["conf"] != 0], video.fps, video.frames).summary()["lines"]
    assert (truth["forward"], truth["backward"]) == (2, 1)
    assert line["forward"] <= truth["forward"] and line["backward"] <= truth["backward"], (line, truth)
    for crossing in line["crossings"]:
        assert any(t["direction"] == crossing["direction"] and abs(t["frame"] - crossing["frame"]) <= video.fps
                   for t in truth["crossings"]), (crossing, truth["crossings"])
    rerun = cli(*args, "--out", str(tmp_path / "o2.mp4"), data_dir=store.data_dir)
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["lines"] == [line], rerun.stderr
    summary = store.runs("track")[0].metrics["summary"]
    assert summary["reused_frames"] == summary["detected_frames"] == 20, summary


@pytest.mark.parametrize("extra, message", [
    (["--line", "1,2,3"], "argument --line: line '1,2,3': expected 4 numbers x1,y1,x2,y2, got 3"),
    (["--line", "5,5,5,5"], "both ends are the same point (5, 5)"),
    (["--line", "0,0,nan,4"], "expected comma-separated numbers, got 'nan'"),
    (["--zone", "0,0,10,0,10"], "expected x,y pairs, got 5 numbers"),
    (["--zone", "0,0,10"], "expected x,y pairs, got 3 numbers"),
    (["--zone", "0,0,10,10"], "expected at least 3 corners"),
    (["--zone", "0,0,10,10,10,0,0,10"], "its edges cross (edge 1 and edge 3)"),
    (["--line", "0,0,170,10"], "line 'line1': point (170, 10) is outside the 160x96 frame"),
    (["--line", "a=0,0,1,1", "--zone", "a=0,0,9,0,9,9"], "zone 'a': the name is used twice"),
])
def test_track_bad_lines_and_zones_are_one_line_and_change_nothing(video_store, extra, message):
    before = video_store.videos()
    result = cli("track", "demo", "--out", str(video_store.data_dir.parent / "o.mp4"), "--model", "tiny", *extra,
                 data_dir=video_store.data_dir)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert video_store.videos() == before and not video_store.runs("track")


def test_main_puts_the_sigterm_handler_back(tmp_path):
    """main() turns SIGTERM into Ctrl+C while a command runs; called inside another program (this
    test process), it leaves that program's handler as it was."""
    import signal
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert cli("models", "--json", data_dir=tmp_path / "d").returncode == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
