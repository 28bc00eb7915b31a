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


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail(path: str, width: int = 160) -> np.ndarray:
    """A small RGB copy of an image file, cached across reruns and sessions (by path: files are
    named by their content hash, so a path never changes content)."""
    from PIL import Image
    with Image.open(path) as im:
        im.draft("RGB", (width * 2, width * 2))  # JPEG: decode at reduced size, much faster
        im = im.convert("RGB")
        im.thumbnail((width, width * 4))
        return np.asarray(im)


@st.cache_data(max_entries=2000, show_spinner=False)
def thumbnail_uri(path: str, width: int = 96) -> str:
    """:func:`thumbnail` as a JPEG data URI (for table image columns), cached the same way."""
    import base64
    import io
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(thumbnail(path, width)).save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


# -- the labeling canvas (streamlit-drawable-canvas, labeled_rect mode) ------------------------------

SAVED_COLOR = "#ffd600"     # boxes as stored
SUGGESTED_COLOR = "#ff6d00"  # a model's suggestion, not yet saved
NEW_COLOR = "#00e5ff"        # drawn in this session


def canvas_size(width: int, height: int, max_width: int = 720, max_height: int = 600) -> tuple[int, int, float]:
    """Display size (w, h) for an image and the scale from image to canvas pixels. Small images
    are enlarged to the canvas width, large ones shrunk; the aspect ratio is kept."""
    scale = min(max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale)), scale


def boxes_to_objects(boxes: list[dict], scale: float) -> dict:
    """An initial drawing: ``boxes`` are {label, xyxy (image px), suggested} dicts."""
    from streamlit_drawable_canvas import boxes_to_drawing

    objects = []
    for box in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in box["xyxy"])
        color = SUGGESTED_COLOR if box.get("suggested") else SAVED_COLOR
        objects += boxes_to_drawing([{"label": box["label"], "left": x1, "top": y1, "width": x2 - x1,
                                      "height": y2 - y1}], stroke_color=color, stroke_width=3)["objects"]
    return {"objects": objects}


def canvas_boxes(result: object, scale: float, width: int, height: int) -> list[dict] | None:
    """Boxes on the canvas as {label, xyxy (original image px, clipped), suggested}, or None
    before the canvas has reported. Uses the component's ``boxes_in_image_space`` (its own
    background fit) when it has one."""
    data = getattr(result, "json_data", None)
    if not data:
        return None
    rects = [o for o in data.get("objects", []) if o.get("type") == "LabeledRect"]
    image_space = result.boxes_in_image_space  # type: ignore[attr-defined]
    if image_space is None:
        image_space = [{**b, "left": b["left"] / scale, "top": b["top"] / scale, "width": b["width"] / scale,
                        "height": b["height"] / scale} for b in result.boxes]  # type: ignore[attr-defined]
    out = []
    for obj, box in zip(rects, image_space):
        x1, y1 = max(0.0, box["left"]), max(0.0, box["top"])
        x2, y2 = min(float(width), box["left"] + box["width"]), min(float(height), box["top"] + box["height"])
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue  # a click without a drag, or a box dragged off the image
        out.append({"label": box["label"], "xyxy": [round(v, 2) for v in (x1, y1, x2, y2)],
                    "suggested": obj.get("stroke") == SUGGESTED_COLOR})
    return out


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes (to skip suggestions that repeat a box already drawn)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def detector_for(target: Store, model: str) -> tuple[DetectorBox, str]:
    """(cached DetectorBox, label) for 'active', 'pretrained' or a stored version's id/name. Never mutate it."""
    if model == "active":
        active = target.active_model()
        return detector(target), (active.name if active else "pretrained COCO")
    if model == "pretrained":
        return _pretrained_detector(str(target.weights_dir)), "pretrained COCO"
    record = target.model(model)
    return _load_detector(str(record.checkpoint), record.checkpoint.stat().st_mtime), record.name


def model_choices(target: Store) -> dict[str, str]:
    """Model options for a selectbox: value → label (active, pretrained, then versions newest first)."""
    return {"active": "active model (else pretrained)", "pretrained": "pretrained COCO"} | \
        {str(m.id): m.name for m in reversed(target.models())}


def latest_result(target: Store, model: str, split: str | None = None) -> dict | None:
    """The newest stored evaluation of a model choice ('active', 'pretrained' or an id), optionally on one split."""
    if model == "active":
        active = target.active_model()
        model_id = active.id if active else None
    else:
        model_id = None if model == "pretrained" else target.model(model).id  # one lookup, not one per result
    return next((r for r in target.results() if r["model_id"] == model_id and split in (None, r["split"])), None)


def worst_first(target: Store, model: str) -> list[int]:
    """Image ids of the model's latest evaluation, lowest AP first (images without cows last)."""
    result = latest_result(target, model)
    if result is None:
        return []
    from cowdetect.metrics import worst_first as by_worst
    return [int(r["image_id"]) for r in by_worst(result["metrics"]["per_image"])]


def detectron2_id(box: DetectorBox, class_id: int) -> int:
    """The seed's detectron2 class id for one of the model's class ids: COCO's 80 real categories
    numbered from 0 (person 0, dog 16, cow 19); other models: foreground classes from 0."""
    names = box.class_names
    real = [i for i, n in enumerate(names) if i > 0 and n != "N/A"]
    return real.index(class_id) if class_id in real else class_id - 1
