"""Model specs on the pages (:func:`cowdetect.models.resolve` reads every one): the choices a
selectbox offers, the cached detector a spec names, its stored evaluations and the labeling
effort its suggestions saved."""

from __future__ import annotations

import re
from typing import Any, Sequence

import pandas as pd
import streamlit as st

from cowdetect import DetectorBox
from cowdetect.accounts import PermissionDenied
from cowdetect.config import GPU_ARCHITECTURE
from cowdetect.detector import pretrained_reason, resolve_device
from cowdetect.models import ARCHITECTURES, ModelRef, resolve
from cowdetect.store import ResultRecord, Store
from cowdetect.tiling import tiled_label
from cowdetect.weights import WeightsUnavailableError


@st.cache_resource(max_entries=3, show_spinner=False)
def _open(spec: str, checkpoint: str | None, modified: float | None, weights_dir: str, _ref: ModelRef) -> DetectorBox:
    return DetectorBox.open(_ref, weights_dir=weights_dir)


def detector_for(store: Store, spec: str = "active") -> tuple[DetectorBox, str]:
    """(cached DetectorBox, label) of a model spec, shared by all sessions: never mutate it.
    It follows the spec: 'active' loads anew when another version becomes active, a version
    when its checkpoint file changes. Raises ValueError for a spec that names nothing."""
    ref = resolve(store, spec)
    path = ref.checkpoint
    return _open(ref.spec, str(path) if path else None, path.stat().st_mtime if path else None,
                 str(store.weights_dir), ref), ref.label


def model_choices(store: Store, active: bool = True, untrained: bool = False,
                  newest_first: bool = True) -> dict[str, str]:
    """Selectbox options, model spec → label: 'active', 'pretrained', the stored versions
    ('#ID'), and with ``untrained`` an untrained model of each architecture."""
    choices = {"active": "active model (else pretrained)"} if active else {}
    choices["pretrained"] = resolve(store, "pretrained").label
    versions = store.models()
    choices |= {f"#{m.id}": m.label for m in (reversed(versions) if newest_first else versions)}
    if untrained:
        choices |= {f"untrained:{a}": f"untrained {a} (random weights)" for a in ARCHITECTURES}
    return choices


def active_model_note(store: Store) -> str:
    """Which detector the pages use, and why (Markdown)."""
    ref = resolve(store, "active")
    if ref.kind == "stored":
        return f"Detector: **{ref.label}** ({ref.architecture}), the active trained version."
    why = pretrained_reason(resolve_device("auto"))
    if ref.architecture == GPU_ARCHITECTURE:
        return f"Detector: pretrained **{ref.architecture}** with COCO weights ({why})."
    return f"Detector: pretrained **{ref.architecture}** with COCO weights (no trained model yet; {why})."


def latest_result(store: Store, spec: str, split: str | None = None, tiles: str = "off") -> ResultRecord | None:
    """The newest stored evaluation of the model a spec names with this tiling, optionally on one split."""
    ref = resolve(store, spec)  # once, not once per result
    label = tiled_label(ref.label, tiles)

    def same(r: ResultRecord) -> bool:
        return r.tiles == tiles and (r.model_id == ref.model_id if ref.model_id is not None else
                                     r.model_id is None and r.model_label == label)

    return next((r for r in store.results() if same(r) and split in (None, r.split)), None)


def worst_first(store: Store, spec: str, tiles: str = "off") -> list[int]:
    """Image ids of the model's latest evaluation, lowest AP first (images without cows last)."""
    from cowdetect.metrics import worst_first as by_worst

    result = latest_result(store, spec, tiles=tiles)
    return [] if result is None else [int(r["image_id"]) for r in by_worst(result.metrics["per_image"])]


def detectron2_id(box: DetectorBox, class_id: int) -> int:
    """The seed's detectron2 class id for one of the model's class ids: COCO's 80 real categories
    numbered from 0 (person 0, dog 16, cow 19); other models: foreground classes from 0."""
    names = box.class_names
    real = [i for i, n in enumerate(names) if i > 0 and n != "N/A"]
    return real.index(class_id) if class_id in real else class_id - 1


EFFORT_COLUMNS = ["suggestions from", "images reviewed", "boxes suggested", "unchanged", "changed", "deleted",
                  "added by hand", "share unchanged"]


def effort_table(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per suggestion source (:meth:`Store.effort` rows): what people did with its boxes
    when they saved the images. 'changed' is moved, resized or relabelled; a model that saves
    work has a high share unchanged and few deleted or added."""
    return pd.DataFrame([{
        "suggestions from": r["source"], "images reviewed": r["images"], "boxes suggested": r["suggested"],
        "unchanged": r["unchanged"], "changed": r["changed"], "deleted": r["deleted"], "added by hand": r["added"],
        "share unchanged": f"{r['unchanged'] / r['suggested']:.0%}" if r["suggested"] else "–"}
        for r in rows], columns=EFFORT_COLUMNS)


def effort_section(store: Store) -> None:
    """The Models page's "Labeling effort" table, when any suggested image was saved."""
    rows = store.effort()
    if rows:
        st.subheader("Labeling effort")
        st.caption("How the boxes each model suggested were edited before saving: the more left unchanged, the "
                   "less work the model saves you.")
        st.dataframe(effort_table(rows), hide_index=True, width="stretch")


def export_section(store: Store) -> None:
    """Prepare an ONNX export of a chosen model, then offer it for download (nothing is written
    to disk: the file is built in memory and kept only for this click)."""
    from cowdetect.export import onnx_bytes  # torch.onnx and onnx load only when this section is drawn

    st.subheader("Export for edge devices")
    st.caption("One ONNX file: an RGB image of any size in; xyxy pixel boxes, scores and class ids out. Resizing, "
               "normalisation and NMS are inside, and the file's metadata names the classes. Run it with "
               "onnxruntime alone (examples/onnx_predict.py) or with cowdetect (--model FILE.onnx).")
    choices = model_choices(store)
    e1, e2 = st.columns(2)
    spec = e1.selectbox("Model to export", list(choices), format_func=choices.get, key="export_spec")
    if not e1.button("Prepare ONNX file", key="export_onnx", disabled=not store.user.may("manage_models"),
                     help="needs the trainer role: the file carries the model's weights out of the app"):
        return
    try:
        store.require("manage_models")  # enforced by the store, not only by the disabled button
        with st.spinner("Exporting (a few seconds)..."):
            box, label = detector_for(store, spec)
            data = onnx_bytes(box, source=label)
    except (ValueError, WeightsUnavailableError, PermissionDenied) as exc:
        st.error(str(exc))
        return
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "model"
    e2.download_button(f"Download {name}.onnx ({len(data) / 1e6:.1f} MB, {box.architecture}, "
                       f"{len(box.classes)} classes)", data, f"{name}.onnx", "application/octet-stream",
                       on_click="ignore", key="export_download")
