"""The only shared Streamlit code: the data folder, the cached store, shared widgets."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import streamlit as st

from cowdetect import DetectorBox
from cowdetect.detector import CPU_REASON
from cowdetect.cli import data_dir_default
from cowdetect.draw import draw_detections
from cowdetect.images import load_image
from cowdetect.store import Store


def data_dir() -> str:
    """``streamlit run app.py -- --data-dir DIR`` wins, then $COWDETECT_DATA_DIR, then ./data."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", default=data_dir_default())
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.data_dir


@st.cache_resource
def get_store(path: str) -> Store:
    """One Store per data folder, shared by all sessions (it opens a connection per call)."""
    return Store(path)


def store() -> Store:
    """The store of this app's data folder."""
    return get_store(str(Path(data_dir()).resolve()))


def start_demo_generation(target: Store) -> None:
    """Generate the demo data in a separate process (the same code as `python -m cowdetect demo`),
    so the page never blocks and a closed browser does not stop it."""
    log = target.data_dir / "demo.log"
    with open(log, "ab") as fh:
        subprocess.Popen([sys.executable, "-m", "cowdetect", "demo", "--data-dir", str(target.data_dir)],
                         stdout=fh, stderr=fh, cwd=Path(__file__).parent, env=os.environ.copy(),
                         start_new_session=True)


def active_model_note(target: Store) -> str:
    """Which detector the pages use, and why (Markdown)."""
    active = target.active_model()
    if active is not None:
        return f"Detector: **{active.name}** ({active.architecture}), the active trained version."
    import torch

    from cowdetect.config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE
    from cowdetect.models import coco_weights_available

    if torch.cuda.is_available() and coco_weights_available(GPU_ARCHITECTURE):
        return f"Detector: pretrained **{GPU_ARCHITECTURE}** with COCO weights (a GPU is present)."
    why = "its COCO weights are not cached" if torch.cuda.is_available() else CPU_REASON
    return f"Detector: pretrained **{DEFAULT_ARCHITECTURE}** with COCO weights (no trained model yet; {why})."


@st.cache_resource(max_entries=2)
def _load_detector(checkpoint: str, modified: float) -> DetectorBox:
    return DetectorBox.load(checkpoint)


@st.cache_resource(max_entries=1)
def _pretrained_detector(weights_dir: str) -> DetectorBox:
    return DetectorBox.pretrained(weights_dir=weights_dir)


def detector(target: Store) -> DetectorBox:
    """The shared, cached DetectorBox of the active model version (else the pretrained one).
    It follows the active model: a new active version or checkpoint loads anew. Never mutate it."""
    active = target.active_model()
    if active is None:
        return _pretrained_detector(str(target.weights_dir))
    return _load_detector(str(active.checkpoint), active.checkpoint.stat().st_mtime)


def labeled_thumbnail(target: Store, image_id: int, width: int = 320) -> np.ndarray:
    """An image with its ground-truth boxes drawn (RGB), scaled to ``width`` px."""
    record = target.image(image_id)
    drawn = draw_detections(load_image(record.path), target.boxes(image_id), color=(255, 214, 0))
    from PIL import Image
    im = Image.fromarray(drawn)
    return np.asarray(im.resize((width, max(1, round(im.height * width / im.width)))))
