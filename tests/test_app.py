"""The Home page through Streamlit's AppTest (no browser), and what `./run.sh app` refuses."""

import os
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import torch

from conftest import ROOT, add_tiny_model
from cowdetect.detector import CPU_REASON
from cowdetect.models import resolve
from cowdetect.store import Store


def run_home(data_dir: Path) -> AppTest:
    os.environ["COWDETECT_DATA_DIR"] = str(data_dir)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
    finally:
        del os.environ["COWDETECT_DATA_DIR"]
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_home_shows_the_state_of_the_data(demo_store):
    at = run_home(demo_store.data_dir)
    metrics = {m.label: m.value for m in at.metric}
    counts = demo_store.counts()
    assert metrics["Images"] == str(counts["images"]) == "12"
    assert metrics["Labeled images"] == str(counts["labeled_images"])
    assert metrics["Cow boxes"] == str(counts["boxes"])
    assert metrics["Models"] == "0"
    assert len(at.get("image")) >= 1  # labeled thumbnails
    note = " ".join(m.value for m in at.markdown)
    architecture = resolve(demo_store, "pretrained").architecture  # ssd_mobilenet_v2_coco without a GPU
    assert f"Detector: pretrained **{architecture}** with COCO weights (" in note
    assert (f"(no trained model yet; {CPU_REASON})." in note) is not torch.cuda.is_available()


def test_home_names_the_active_version(store):
    add_tiny_model(store, "herd")
    at = run_home(store.data_dir)
    note = " ".join(m.value for m in at.markdown)
    assert "Detector: **herd (#1)** (fasterrcnn_mobilenet_v3_large_320_fpn), the active trained version." in note
    assert at.dataframe[0].value["version"].tolist() == ["herd (#1)"]
    assert {m.label: m.value for m in at.metric}["Models"] == "1"


def test_home_offers_demo_when_empty(tmp_path):
    at = run_home(tmp_path / "empty")
    assert {m.label: m.value for m in at.metric}["Images"] == "0"
    assert any("Generate demo data" in b.label for b in at.button)


def run_sh_app(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """``./run.sh app ARGS`` with .venv as it is (no install), on ``data_dir``; a start of streamlit
    would not end, and fails the test by its timeout."""
    env = {**os.environ, "COWDETECT_DATA_DIR": str(data_dir), "COWDETECT_NO_INSTALL": "1"}
    return subprocess.run([str(ROOT / "run.sh"), "app", *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [("--network",), ("--server.address", "0.0.0.0"), ("--server.address=10.0.0.5",)])
def test_run_sh_refuses_the_network_without_an_admin(tmp_path, args):
    done = run_sh_app(*args, data_dir=tmp_path / "data")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs an admin account first" in lines[0], done.stderr
    assert f"python -m cowdetect users add NAME --role admin --data-dir {tmp_path / 'data'}" in lines[0]
    assert not done.stdout


def test_run_sh_checks_the_data_folder_the_app_will_use(tmp_path):
    Store(tmp_path / "team").add_user("ada", "admin", "correct horse")
    other = tmp_path / "other"  # no accounts: the admin of $COWDETECT_DATA_DIR does not count for it
    done = run_sh_app("--network", "--", "--data-dir", str(other), data_dir=tmp_path / "team")
    assert done.returncode == 2 and f"--data-dir {other}" in done.stderr
