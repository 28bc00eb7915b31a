"""The command line, run for real as `python -m cowdetect` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def cli(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    extra = ["--data-dir", str(data_dir)] if data_dir else []
    return subprocess.run([sys.executable, "-m", "cowdetect", *args, *extra], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """demo → train (2 iterations) once for the module."""
    data = tmp_path_factory.mktemp("cli") / "data"
    demo = cli("demo", "--train", "6", "--val", "0", "--test", "3", "--size", "128x96", "--no-video", "--json",
               data_dir=data)
    assert demo.returncode == 0, demo.stderr
    train = cli("train", "--iterations", "2", "--name", "tiny", "--json", data_dir=data)
    assert train.returncode == 0, train.stderr
    return data, json.loads(demo.stdout), json.loads(train.stdout)


def test_demo_train_models(trained):
    data, demo, train = trained
    assert demo["counts"]["splits"]["train"] == 6 and demo["counts"]["splits"]["test"] == 3
    assert train["model"] == "tiny" and train["iterations"] == 2 and Path(train["checkpoint"]).is_file()
    assert Path(train["checkpoint"]).is_relative_to(data)
    models = json.loads(cli("models", "--json", data_dir=data).stdout)
    assert [m["name"] for m in models] == ["tiny"]


def test_evaluate_json(trained):
    data, _, _ = trained
    out = cli("evaluate", "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    for key in ("map", "map_50", "map_75", "per_class", "per_image"):
        assert key in result
    assert result["model"] == "tiny (#1)" and result["split"] == "test" and result["num_images"] == 3


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


@pytest.mark.parametrize("make_args, message", [
    (lambda d, t: ["predict", str(t / "notes.jpg")], "not an image"),
    (lambda d, t: ["predict", str(t / "empty.jpg")], "empty"),
    (lambda d, t: ["predict", str(t / "missing.jpg")], "no such file"),
    (lambda d, t: ["evaluate", "--model", "nope"], "no version called 'nope'"),
    (lambda d, t: ["evaluate", "--split", "val"], "no labeled images"),
    (lambda d, t: ["predict", str(t / "notes.jpg"), "--model", str(t / "fake.pt")], "not an image|checkpoint"),
])
def test_errors_are_one_line_without_traceback(trained, tmp_path, make_args, message):
    data, _, _ = trained
    (tmp_path / "notes.jpg").write_text("these are notes\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "fake.pt").write_text("not a checkpoint")
    before = sorted(p.name for p in data.rglob("*") if p.is_file() and "sqlite" not in p.name)
    out = cli(*make_args(data, tmp_path), data_dir=data)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.startswith("error: ")
    import re
    assert re.search(message, out.stderr), out.stderr
    assert sorted(p.name for p in data.rglob("*") if p.is_file() and "sqlite" not in p.name) == before


def test_train_on_empty_store_and_unknown_architecture(tmp_path):
    out = cli("train", "--iterations", "1", data_dir=tmp_path / "empty")
    assert out.returncode == 2 and "has 0 labeled images; label at least 5 more" in out.stderr
    assert "Traceback" not in out.stderr
    out = cli("train", "--model", "untrained:yolo", data_dir=tmp_path / "empty")
    assert out.returncode == 2 and "fasterrcnn_resnet50_fpn" in out.stderr
    out = cli("train", "--model", "12x", data_dir=tmp_path / "empty")  # the message shows the spec grammar
    assert out.returncode == 2 and "'coco:ARCH'" in out.stderr and "'#ID' or 'ID'" in out.stderr


def test_evaluate_without_trained_model_uses_pretrained_and_says_why(tmp_path):
    import torch
    from cowdetect.models import pretrained_architecture
    data = tmp_path / "d"
    assert cli("demo", "--train", "1", "--val", "0", "--test", "2", "--size", "160x120", "--no-video",
               data_dir=data).returncode == 0
    out = cli("evaluate", "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    architecture = pretrained_architecture(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    assert f"model: pretrained {architecture} with COCO weights: " in out.stderr  # which, and why
    assert json.loads(out.stdout)["model"] == f"pretrained {architecture}"
    assert (data / "weights" / "ssd_mobilenet_v2_coco.pt").is_file()  # converted into the data folder


def test_runs_and_resume(trained, tmp_path):
    data, _, train = trained
    runs = json.loads(cli("runs", "--json", data_dir=data).stdout)
    assert runs[0]["id"] == train["run_id"] and runs[0]["status"] == "done"
    assert set(runs[0]) >= {"id", "status", "iteration", "checkpoint_iteration"}
    out = cli("train", "--resume", str(train["run_id"]), data_dir=data)
    assert out.returncode == 2 and "is done; start a new run" in out.stderr
    out = cli("train", "--resume", "999", data_dir=data)
    assert out.returncode == 2 and "run 999: no such run" in out.stderr


def test_interrupted_cli_run_resumes(tmp_path):
    """A CLI run killed mid-way (as by Ctrl+C or a crash) resumes from its checkpoint."""
    import signal
    import time

    data = tmp_path / "d"
    assert cli("demo", "--train", "6", "--val", "0", "--test", "0", "--size", "128x96", "--no-video",
               data_dir=data).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "train", "--data-dir", str(data), "--model",
                             "untrained:fasterrcnn_mobilenet_v3_large_320_fpn", "--iterations", "12",
                             "--checkpoint-every", "2", "--eval-every", "0", "--threads", "1"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from cowdetect.store import Store
    store = Store(data)
    deadline = time.monotonic() + 180
    while not (store.runs() and store.runs()[0].checkpoint_iteration >= 2):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    runs = json.loads(cli("runs", "--json", data_dir=data).stdout)
    assert runs[0]["status"] == "interrupted" and runs[0]["checkpoint_iteration"] >= 2
    out = cli("train", "--resume", str(runs[0]["id"]), "--json", data_dir=data)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "done" and result["iteration"] == 12 and result["model"]


@pytest.mark.parametrize("size", ["640", "axb", "10x10"])
def test_demo_bad_size_stores_nothing(tmp_path, capsys, size):
    from cowdetect.cli import main
    assert main(["demo", "--size", size, "--no-video", "--data-dir", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "size" in err
    assert not list((tmp_path / "d").rglob("*.jpg"))
