"""The Home page through Streamlit's AppTest (no browser)."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

import torch

from conftest import ROOT, add_tiny_model
from cowdetect.detector import CPU_REASON
from cowdetect.models import resolve


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
