"""The Home page through Streamlit's AppTest (no browser)."""

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from conftest import ROOT


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
    import torch
    note = " ".join(m.value for m in at.markdown)
    if not torch.cuda.is_available():
        assert "Detector: pretrained **ssd_mobilenet_v2_coco** with COCO weights (no trained model yet; no GPU here" in note


def test_home_offers_demo_when_empty(tmp_path):
    at = run_home(tmp_path / "empty")
    assert {m.label: m.value for m in at.metric}["Images"] == "0"
    assert any("Generate demo data" in b.label for b in at.button)
