"""Every expected failure of the command line is one line on stderr and exit status 2, and stores
nothing; anything else is exit 1 and one line saying where the traceback was written.

Most cases run ``cowdetect.cli.main`` in this process on a copy of one small data folder and
compare the folder's files and every table's rows before and after. Faults of the data folder
itself that file permissions make (read-only, unreadable) run ``python -m cowdetect`` in a child
process that obeys permissions even when the tests run as root (see :func:`_as_plain_user`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, add_tiny_model
from cowdetect.cli import main

# -- the data folder and the bad files ----------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A small data folder: 6 train + 2 test labeled 128x96 images, a 1 s demo video with ground
    truth, a tiny model version, and two accounts (alice, the only admin; bob, a labeler)."""
    from cowdetect.demo import make_demo, make_demo_video
    from cowdetect.store import Store

    store = Store(tmp_path_factory.mktemp("template") / "data")
    make_demo(store, n_train=6, n_val=0, n_test=2, seed=1, size=(128, 96), video=False)
    make_demo_video(store, seconds=1.0, fps=10, size=(160, 96))
    add_tiny_model(store)
    store.add_user("alice", "admin", "alice-password")
    store.add_user("bob", "labeler", "bob-password")
    return store.data_dir


@pytest.fixture
def data(template, tmp_path) -> Path:
    """A fresh copy of the template folder for one test."""
    return Path(shutil.copytree(template, tmp_path / "data"))


def _huge_video(path: Path) -> None:
    """One black 10000x10000 frame (H.264): 100 megapixels, twice the limit (a few seconds to encode)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width = stream.height = 10000
        stream.pix_fmt, stream.options = "yuv420p", {"preset": "ultrafast"}
        frame = av.VideoFrame.from_ndarray(np.zeros((10000, 10000, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """A folder of inputs, good and bad, named as the cases use them."""
    import torch

    from cowdetect.demo import render_video
    from cowdetect.video import write_video

    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(folder / "cow.jpg")
    (folder / "notes.txt").write_text("these are notes\n")
    (folder / "notes.jpg").write_text("these are notes\n")
    (folder / "zero.pt").write_bytes(b"")
    (folder / "text.pt").write_text("not a checkpoint\n")
    torch.save(torch.nn.Linear(2, 2), folder / "pickled.pt")  # a pickled module: code, not data
    torch.save({"format": "cowdetect-checkpoint", "version": 1, "state_dict": {}}, folder / "noconfig.pt")
    torch.save({"format": "cowdetect-checkpoint", "version": 1, "config": {"architecture": "ssd_mobilenet_v2_coco"}},
               folder / "nostate.pt")
    (folder / "a-folder").mkdir()
    (folder / "a-file").write_text("x")
    (folder / "bad-gt.txt").write_text("1,2,three\n")
    (folder / "empty-gt.txt").write_text("")
    write_video((frame for frame, _ in render_video(0, 160, 96, 10, 1.0)), folder / "cows.mp4", fps=10)
    _huge_video(folder / "huge.mp4")
    return folder


def snapshot(data: Path) -> tuple[list[tuple[str, int]], dict[str, list[tuple]]]:
    """The data folder's files (name, size) and every table's rows: what "nothing stored" compares."""
    files = sorted((str(p.relative_to(data)), p.stat().st_size) for p in data.rglob("*")
                   if p.is_file() and "sqlite" not in p.name)
    conn = sqlite3.connect(f"file:{data / 'cowdetect.sqlite'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows = {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}")), key=repr) for t in tables}
    finally:
        conn.close()
    return files, rows


def run(capsys, *argv: str, data: Path | str | None = None) -> tuple[int, str, str]:
    """``python -m cowdetect ARGV --data-dir DATA`` in this process: (status, stdout, stderr)."""
    capsys.readouterr()
    code = main([*argv, *(["--data-dir", str(data)] if data is not None else [])])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, message: str, prefix: str = "error: ") -> None:
    """Exactly one line on stderr, starting with ``prefix`` and matching ``message``; no traceback and
    never torch's advice to load a checkpoint with weights_only=False."""
    assert err.startswith(prefix) and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "weights_only" not in err and re.search(message, err), err


# -- bad arguments and inputs: one table ---------------------------------------------------------

# (arguments, with {bad} the bad-inputs folder and {tmp} a scratch folder; the one line expected)
CASES = [
    # checkpoints given as --model
    ("predict {bad}/cow.jpg --model {bad}/zero.pt", r"zero.pt is empty \(0 bytes\)"),
    ("predict {bad}/cow.jpg --model {bad}/text.pt", r"text.pt is not a readable cowdetect checkpoint"),
    ("predict {bad}/cow.jpg --model {bad}/pickled.pt", r"pickled.pt holds pickled Python objects \(torch.nn"),
    ("predict {bad}/cow.jpg --model {bad}/noconfig.pt", r"noconfig.pt is a cowdetect checkpoint without its config"),
    ("predict {bad}/cow.jpg --model {bad}/nostate.pt", r"nostate.pt is a cowdetect checkpoint without its state_dict"),
    ("predict {bad}/cow.jpg --model {bad}/missing.pt", r"no checkpoint file at .*missing.pt"),
    ("train --model {bad}/zero.pt", r"zero.pt is empty"),
    ("train --model {bad}/pickled.pt", r"pickled.pt holds pickled Python objects"),
    ("evaluate --model {bad}/text.pt", r"text.pt is not a readable cowdetect checkpoint"),
    ("track demo --out {tmp}/o.mp4 --model {bad}/nostate.pt", r"without its state_dict"),
    ("prelabel --split train", r"split 'train' has no unlabeled images to pre-label"),
    # numbers: finite and in range, checked where they are parsed
    ("predict {bad}/cow.jpg --score-threshold nan", r"--score-threshold: expected a number from 0 to 1, got 'nan'"),
    ("predict {bad}/cow.jpg --score-threshold 1.5", r"--score-threshold: expected a number from 0 to 1"),
    ("predict {bad}/cow.jpg --seed -1", r"--seed: expected a whole number from 0 to 4294967295"),
    ("prelabel --split train --score-threshold nan", r"--score-threshold: expected a number from 0 to 1"),
    ("train --iterations 0", r"--iterations: expected a whole number from 1"),
    ("train --iterations 1e3", r"--iterations: expected a whole number from 1"),
    ("train --batch-size 100000", r"--batch-size: expected a whole number from 1 to 1024"),
    ("train --lr nan", r"--lr: expected a positive number, got 'nan'"),
    ("train --lr inf", r"--lr: expected a positive number, got 'inf'"),
    ("train --lr 0", r"--lr: expected a positive number"),
    ("train --checkpoint-every -1", r"--checkpoint-every: expected a whole number from 0"),
    ("train --eval-every -1", r"--eval-every: expected a whole number from 0"),
    ("train --patience -1", r"--patience: expected a whole number from 0"),
    ("train --seed 99999999999999999999", r"--seed: expected a whole number from 0 to 4294967295"),
    ("train --backbone-lr 2", r"--backbone-lr: expected a number from 0 to 1"),
    ("train --keep-start -0.1", r"--keep-start: expected a number from 0 to 1"),
    ("train --tile-crops nan", r"--tile-crops: expected a number from 0 to 1"),
    ("train --log-every 0", r"--log-every: expected a positive number"),
    ("train --threads 0", r"--threads: expected a whole number from 1 to 1024"),
    ("runs --threads 100000000000", r"--threads: expected a whole number from 1 to 1024"),
    ("train --resume 0", r"--resume: expected a run id"),
    ("train --resume 999", r"run 999: no such run"),
    ("worker 999", r"run 999: no such run"),
    ("worker -1", r"run_id: expected a run id"),
    ("track demo --out {tmp}/o.mp4 --distance-threshold -1", r"--distance-threshold: expected a positive number"),
    ("track demo --out {tmp}/o.mp4 --distance-threshold nan", r"--distance-threshold: expected a positive number"),
    ("track demo --out {tmp}/o.mp4 --score-threshold nan", r"--score-threshold: expected a number from 0 to 1"),
    ("track demo --out {tmp}/o.mp4 --hit-counter-max 0", r"--hit-counter-max: expected a whole number from 1"),
    ("track demo --out {tmp}/o.mp4 --initialization-delay -1", r"--initialization-delay: expected a whole number"),
    ("track demo --out {tmp}/o.mp4 --hit-counter-max 3 --initialization-delay 5", r"initialization_delay: expected 0"),
    ("track demo --out {tmp}/o.mp4 --detect-every 0", r"--detect-every: expected a whole number from 1"),
    ("track demo --out {tmp}/o.mp4 --batch-size 0", r"--batch-size: expected a whole number from 1 to 1024"),
    ("import-video demo --every nan", r"--every: expected a positive number, got 'nan'"),
    ("import-video demo --every inf", r"--every: expected a positive number, got 'inf'"),
    ("import-video demo --count 0", r"--count: expected a whole number from 1"),
    ("import-video demo --min-change 65", r"--min-change: expected a whole number from 0 to 64"),
    ("import-video demo --from-run 0", r"--from-run: expected a run id"),
    ("import-deeplake {bad}/a-folder --limit -1", r"--limit: expected a whole number from 0"),
    ("demo --train -1", r"--train: expected a whole number from 0 to 10000"),
    ("demo --test 100000000000", r"--test: expected a whole number from 0 to 10000"),
    ("demo --video-seconds nan", r"--video-seconds: expected seconds from 0.1 to 600"),
    ("demo --video-seconds 1e9", r"--video-seconds: expected seconds from 0.1 to 600"),
    ("demo --size 10x10", r"size: expected between 64x64 and 4096x4096"),
    ("demo --size axb", r"--size: expected WIDTHxHEIGHT"),
    # other bad values
    ("predict {bad}/cow.jpg --device tpu", r"device: expected 'auto', 'cpu' or 'cuda\[:N\]', got 'tpu'"),
    ("predict {bad}/cow.jpg --tiles 0x0", r"tiles: expected 1 to 16 rows and columns"),
    ("predict {bad}/notes.jpg", r"not an image file"),
    ("predict {bad}/a-folder", r"a-folder"),
    ("evaluate --split holdout", r"split: expected one of"),
    ("evaluate --backend numpy", r"--backend: invalid choice: 'numpy'"),
    ("prelabel", r"which images\? give --split S"),
    ("prelabel --resume 999", r"run 999: no such run"),
    ("train --split holdout", r"split: expected one of"),
    ("train --name 123", r"model name: expected letters"),
    ("track demo --out {tmp}/o.mp4 --model nope", r"no version called 'nope'"),
    ("track demo --out {tmp}/o.mp4 --device gpu", r"device: expected"),
    ("track demo --out {tmp}/o.mp4 --tiles 99x99", r"tiles: expected"),
    # input files
    ("track {bad}/huge.mp4 --out {tmp}/o.mp4", r"video huge.mp4: frames of 10000x10000 are 100 megapixels, more "
                                                r"than the limit of 50"),
    ("import-video {bad}/huge.mp4", r"video huge.mp4: frames of 10000x10000 are 100 megapixels"),
    ("track {bad}/notes.txt --out {tmp}/o.mp4", r"notes.txt: expected a video file"),
    ("track {bad}/a-folder --out {tmp}/o.mp4", r"video .*a-folder: a folder; give a file"),
    ("track {bad}/missing.mp4 --out {tmp}/o.mp4", r"video .*missing.mp4: no such file"),
    ("track {bad}/cows.mp4 --out {tmp}/o.mp4 --tiles 16x16", r"tiles: 16x16 tiles of a 160x96 image"),
    ("track {bad}/cows.mp4 --out {tmp}/o.mp4 --gt {bad}/bad-gt.txt",
     r"--gt .*bad-gt.txt: expected comma-separated numbers"),
    ("track demo --out {tmp}/o.mp4 --gt {bad}/bad-gt.txt", r"--gt .*bad-gt.txt: expected comma-separated numbers"),
    ("track demo --out {tmp}/o.mp4 --gt {bad}/empty-gt.txt", r"--gt .*empty-gt.txt: no boxes to score against"),
    ("track demo --out {tmp}/o.mp4 --gt {bad}/missing.txt", r"--gt .*missing.txt: no such file"),
    ("track demo --out {tmp}/o.mp4 --gt {bad}/a-folder", r"--gt .*a-folder: a folder"),
    ("import-video {bad}/notes.txt", r"notes.txt: expected a video file"),
    ("import-video {bad}/a-folder", r"video .*a-folder: a folder"),
    ("import-video demo --from-run 999", r"run 999: no such run"),
    ("import-video demo --split holdout", r"split: expected one of"),
    ("import-images {bad}/a-folder", r"a-folder: a folder; give the image files"),
    ("import-images {bad}/missing.jpg", r"missing.jpg: no such file"),
    ("import-images /dev/null", r"/dev/null: not a regular file"),
    ("import-coco {bad}/notes.txt {bad}/a-folder", r"COCO JSON notes.txt: not JSON"),
    ("import-coco {bad}/missing.json {bad}/a-folder", r"COCO JSON .*missing.json: no such file"),
    ("import-coco {bad}/a-folder {bad}/a-folder", r"COCO JSON .*a-folder: a folder"),
    ("import-coco {bad}/notes.txt {bad}/missing", r"IMAGES_DIR .*missing: no such folder"),
    ("import-coco {bad}/notes.txt {bad}/a-file", r"IMAGES_DIR .*a-file: a file, not a folder"),
    # output paths, checked before any work
    ("export-yolo {bad}/a-file", r"DIR: .*a-file is a file, not a folder"),
    ("export-yolo {tmp}/missing/yolo", r"DIR: the folder .*missing does not exist"),
    ("export-coco {bad}/a-folder", r"OUT.json: .*a-folder is a folder; give a file name"),
    ("export-coco {tmp}/missing/o.json", r"OUT.json: the folder .*missing does not exist"),
    ("export-coco {tmp}/o.json --images-dir {bad}/a-file", r"--images-dir: .*a-file is a file, not a folder"),
    ("evaluate --predictions {bad}/a-folder", r"--predictions: .*a-folder is a folder"),
    ("evaluate --predictions {tmp}/missing/p.json", r"--predictions: the folder .*missing does not exist"),
    ("predict {bad}/cow.jpg --out {tmp}/o.gif", r"--out: expected a file ending in .png, .jpg"),
    ("predict {bad}/cow.jpg --out {tmp}/missing/o.png", r"--out: the folder .*missing does not exist"),
    ("track demo --out {tmp}/missing/o.mp4", r"--out: the folder .*missing does not exist"),
    ("track demo --out {bad}/a-folder", r"--out: .*a-folder is a folder; give a file name"),
    ("track demo --out {tmp}/o.mp4 --mot {bad}/a-file/m.txt", r"--mot: .*a-file is a file, not a folder"),
    ("track demo --out {tmp}/o.mp4 --csv {bad}/a-folder", r"--csv: .*a-folder is a folder"),
    ("predict {bad}/cow.jpg --out {bad}/cow.jpg", r"--out: .*cow.jpg is an input of this command"),
    ("track {bad}/cows.mp4 --out {bad}/cows.mp4", r"--out: .*cows.mp4 is an input of this command"),
    ("track demo --out {tmp}/o.mp4 --mot {tmp}/o.mp4", r"--mot: .*o.mp4 is also given as --out"),
    # usage
    ("nonsense", r"argument command: invalid choice: 'nonsense'"),
    ("track demo", r"the following arguments are required: --out \(see: python -m cowdetect track --help\)"),
    ("runs --colour red", r"unrecognized arguments: --colour red"),
    # accounts
    ("users add", r"users add: give the account's NAME"),
    ("users add carol", r"users add: give --role"),
    ("users add 'bad name' --role admin", r"user name: expected a letter"),
    ("users add bob --role admin", r"user 'bob' exists already"),
    ("users remove nobody", r"user 'nobody': no such account"),
    ("users set-role nobody --role admin", r"user 'nobody': no such account"),
    ("users set-password nobody", r"user 'nobody': no such account"),
    ("users add carol --role admin", r"password: expected 8 to 1024 characters"),  # stdin: 'short'
    ("users remove alice", r"user 'alice' is the last admin"),
    ("users set-role alice --role viewer", r"user 'alice' is the last admin"),
    ("users add carol --role wizard", r"--role: invalid choice: 'wizard'"),
]


def _argv(text: str, bad: Path, tmp: Path) -> list[str]:
    import shlex

    return shlex.split(text.format(bad=bad, tmp=tmp))


@pytest.mark.parametrize("args, message", CASES, ids=[c[0].replace("{bad}/", "").replace("{tmp}/", "")
                                                      for c in CASES])
def test_bad_input_is_one_line_exit_2_and_stores_nothing(data, bad, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("short\n"))  # a password too short
    before = snapshot(data)
    code, out, err = run(capsys, *_argv(args, bad, tmp_path), data=data)
    assert code == 2, err
    assert_one_line(err, message)
    assert out == ""
    assert snapshot(data) == before
    assert not [p for p in tmp_path.iterdir() if p.name != "data"]  # no output written either


@pytest.mark.parametrize("names, message", [
    (["notes.txt"], r"nothing imported: 1 file skipped \(notes.txt: not an image or zip file \(.txt\)"),
    (["notes.txt", "notes.jpg", "zero.pt", "text.pt"],
     r"nothing imported: 4 files skipped \(notes.txt: not an image .*; notes.jpg: .*; zero.pt: .*; and 1 more\)$"),
])
def test_an_import_where_every_file_was_skipped_is_exit_2_with_the_reasons(data, bad, capsys, names, message):
    before_files, before_rows = snapshot(data)
    code, out, err = run(capsys, "import-images", *[str(bad / n) for n in names], data=data)
    assert code == 2 and out == ""
    assert_one_line(err, message)
    files, rows = snapshot(data)
    # the activity log may record the attempt (cowdetect.formats does); nothing else changes
    assert files == before_files and {t: r for t, r in rows.items() if t != "activity"} == \
        {t: r for t, r in before_rows.items() if t != "activity"}


def test_a_refused_import_with_json_still_prints_the_report(data, bad, capsys):
    code, out, err = run(capsys, "import-images", str(bad / "notes.txt"), "--json", data=data)
    assert code == 2
    assert_one_line(err, r"nothing imported: 1 file skipped")
    assert '"skipped"' in out and "notes.txt" in out


def test_an_import_that_adds_something_exits_0_with_the_per_file_report(data, bad, capsys):
    code, out, err = run(capsys, "import-images", str(bad / "cow.jpg"), str(bad / "notes.txt"), data=data)
    assert code == 0, err
    assert out.startswith("1 images added") and "1 skipped" in out
    assert err == "skipped notes.txt: not an image or zip file (.txt); expected .jpg, .jpeg, .png, .webp, .bmp " \
                  "or .zip\n"
    code, out, err = run(capsys, "import-images", str(bad / "cow.jpg"), str(bad / "notes.txt"), data=data)
    assert code == 0 and out.startswith("0 images added (0 boxes), 1 already stored")  # not "nothing imported"


# -- the data folder itself ----------------------------------------------------------------------

def test_data_dir_that_is_a_file_or_inside_one(bad, capsys):
    code, _, err = run(capsys, "runs", data=bad / "a-file")
    assert code == 2
    assert_one_line(err, r"data folder: expected a folder, got the file .*a-file")
    code, _, err = run(capsys, "import-images", str(bad / "cow.jpg"), data=bad / "a-file" / "data")
    assert code == 2
    assert_one_line(err, r"data folder: .*a-file/data cannot be made, .*a-file is a file, not a folder")


@pytest.mark.parametrize("damage, message", [
    (lambda db: db.write_bytes(os.urandom(4096)), r"cowdetect.sqlite: file is not a database \(the file is damaged"),
    (lambda db: (db.unlink(), db.mkdir()), r"cowdetect.sqlite: unable to open database file"),
], ids=["random-bytes", "a-folder"])
def test_a_damaged_database_is_one_line(data, bad, capsys, damage, message):
    for leftover in data.glob("cowdetect.sqlite-*"):
        leftover.unlink()
    damage(data / "cowdetect.sqlite")
    files = sorted(data.rglob("*"))
    for args in (["runs"], ["import-images", str(bad / "cow.jpg")], ["evaluate"]):
        code, out, err = run(capsys, *args, data=data)
        assert code == 2 and out == ""
        assert_one_line(err, r"database .*" + message)
    assert sorted(data.rglob("*")) == files


def test_a_full_disk_is_one_line_and_leaves_no_file(data, bad, capsys, monkeypatch):
    """Simulated: every Path.write_bytes in this process raises ENOSPC, as a full disk would (there
    is no small file system to fill here). The image write fails; nothing is left behind."""
    def full(self, content):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    before = snapshot(data)
    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    code, _, err = run(capsys, "import-images", str(bad / "cow.jpg"), data=data)
    monkeypatch.undo()
    assert code == 2
    assert_one_line(err, r"^error: the data folder .*data: No space left on device \(the disk is full; free some space or "
                         r"use another --data-dir\)$")  # the folder, not the half-written scratch file
    assert snapshot(data) == before


def test_a_locked_database_is_one_line(data, bad, capsys, monkeypatch):
    """Another process holds the write lock: after the (here shortened) wait, one line says so."""
    import cowdetect.store.base as base

    real_connect = sqlite3.connect
    monkeypatch.setattr(base.sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "timeout": 0.2}))
    before = snapshot(data)
    holder = real_connect(data / "cowdetect.sqlite")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        code, _, err = run(capsys, "import-images", str(bad / "cow.jpg"), data=data)
    finally:
        holder.rollback()
        holder.close()
    assert code == 2
    assert_one_line(err, r"database .*cowdetect.sqlite: database is locked \(another process is writing to it")
    assert snapshot(data) == before


def test_a_role_that_may_not_write_is_one_line(data, bad, capsys, monkeypatch):
    """PermissionDenied from the store (here the CLI's local user made a viewer) is an expected error."""
    import cowdetect.store.base as base
    from cowdetect.accounts import User

    monkeypatch.setattr(base, "local_user", lambda: User("local:someone", "viewer"))
    before = snapshot(data)
    code, _, err = run(capsys, "import-images", str(bad / "cow.jpg"), data=data)
    assert code == 2
    assert_one_line(err, r"local:someone \(viewer\) may not import")
    assert snapshot(data) == before


def _as_plain_user() -> None:
    """``preexec_fn`` for a child that obeys file permissions even when the tests run as root: drop
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its capability bounding set before exec
    (prctl PR_CAPBSET_DROP), so chmod 000 / 555 bind it as they bind any user."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def cli_process(*args: str, data: Path) -> subprocess.CompletedProcess:
    """``python -m cowdetect ARGS --data-dir DATA`` in a child process bound by file permissions."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        return subprocess.run([sys.executable, "-m", "cowdetect", *args, "--data-dir", str(data)], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_as_plain_user)
    except subprocess.SubprocessError as exc:  # prctl refused: no CAP_SETPCAP in this container
        pytest.skip(f"cannot make a child process obey file permissions here ({exc})")


@pytest.mark.parametrize("mode, args", [
    (0o555, ["import-images", "{bad}/cow.jpg"]),  # read-only
    (0o000, ["runs"]),                            # unreadable
], ids=["read-only", "unreadable"])
def test_a_data_folder_we_may_not_use_is_one_line(data, bad, mode, args):
    for leftover in data.glob("cowdetect.sqlite-*"):  # a clean close, as after the app stopped
        leftover.unlink()
    before = snapshot(data)
    data.chmod(mode)
    try:
        done = cli_process(*[a.format(bad=bad) for a in args], data=data)
    finally:
        data.chmod(0o755)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert_one_line(done.stderr, r"data folder .*data: this user may not read and write it")
    assert snapshot(data) == before


def test_a_read_only_database_file_is_one_line(data, bad):
    for leftover in data.glob("cowdetect.sqlite-*"):
        leftover.unlink()
    before = snapshot(data)
    (data / "cowdetect.sqlite").chmod(0o444)
    try:
        done = cli_process("import-images", str(bad / "cow.jpg"), data=data)
    finally:
        (data / "cowdetect.sqlite").chmod(0o644)
    assert done.returncode == 2, done.stderr
    assert_one_line(done.stderr, r"database .*cowdetect.sqlite: attempt to write a readonly database \(the data "
                                 r"folder or its database is read-only")
    assert snapshot(data) == before


def test_a_bad_checkpoint_in_a_real_process(data, bad):
    """The zero-byte .pt used to fail inside the error handler itself: the real exit status and stderr."""
    done = cli_process("predict", str(bad / "cow.jpg"), "--model", str(bad / "zero.pt"), data=data)
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line(done.stderr, r"zero.pt is empty \(0 bytes\), not a cowdetect checkpoint")


# -- what nobody expected ------------------------------------------------------------------------

def test_an_unexpected_error_is_exit_1_and_one_line_naming_the_log(data, capsys, monkeypatch):
    from cowdetect import jobs

    def broken(store):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(jobs, "runs_table", broken)
    code, out, err = run(capsys, "runs", data=data)
    log = data / "logs" / "errors.log"
    assert code == 1 and out == ""
    assert_one_line(err, re.escape(f"(RuntimeError: boom second line); the full traceback is in {log}"),
                    prefix="unexpected error ")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text and " runs " in text


def test_an_unexpected_error_logs_to_a_temporary_file_when_the_data_folder_cannot_take_it(data, capsys,
                                                                                         monkeypatch):
    from cowdetect import jobs

    monkeypatch.setattr(jobs, "runs_table", lambda store: {}["missing"])
    (data / "logs").write_text("a file where the logs folder would be")
    code, _, err = run(capsys, "runs", data=data)
    assert code == 1
    assert_one_line(err, r"\(KeyError: 'missing'\); the full traceback is in .*cowdetect-error-.*\.log \(the data "
                         r"folder could not take it\)", prefix="unexpected error ")
    log = Path(re.search(r"is in (\S+) \(", err).group(1))
    try:
        assert "KeyError: 'missing'" in log.read_text()
    finally:
        log.unlink()


def test_ctrl_c_is_130(data, capsys, monkeypatch):
    from cowdetect import jobs

    def interrupted(store):
        raise KeyboardInterrupt

    monkeypatch.setattr(jobs, "runs_table", interrupted)
    code, _, err = run(capsys, "runs", data=data)
    assert code == 130 and err == "interrupted\n"


def test_resuming_a_run_of_another_kind_changes_nothing(data, capsys):
    from cowdetect import jobs
    from cowdetect.store import Store

    store = Store(data)
    track_run = jobs.create_tracking_run(store, jobs.tracking_settings(store, store.videos()[0].id, model="tiny"))
    store.update_run(track_run, status="failed", error="for the test")
    train_run = store.add_run("train", {"for": "the test"})[0]
    store.update_run(train_run, status="stopped")
    before = snapshot(data)
    for command, run_id, message in (("train", track_run, f"run {track_run} is a track run, not a training run"),
                                     ("prelabel", track_run, f"run {track_run} is not a pre-label run"),
                                     ("prelabel", train_run, f"run {train_run} is not a pre-label run")):
        code, out, err = run(capsys, command, "--resume", str(run_id), data=data)
        assert code == 2 and out == ""
        assert_one_line(err, message)
    assert snapshot(data) == before
