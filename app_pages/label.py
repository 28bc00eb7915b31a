"""Label: draw, move, resize, relabel and delete cow boxes on the image; model suggestions; save."""

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

import ui
from cowdetect.detections import Detections

st.title("Label")
store = ui.store()
state = st.session_state
if not store.count_images():
    st.info("No images yet: add some on the Data page, or generate the demo data on the Home page.")
    st.stop()

for kind, text in state.pop("flash", []):
    getattr(st, kind)(text)
classes = store.classes()
top = st.columns([2, 2, 3])
split = top[0].selectbox("Images", ["all", "train", "val", "test", "unassigned"], key="label_split")
where = None if split == "all" else split
total = store.count_images(where)
if not total:
    st.info(f"No images in {split}.")
    st.stop()
new_class = top[1].selectbox("Class for new boxes", classes, key="label_class")
threshold = top[2].slider("Suggestion score threshold", 0.05, 0.95, 0.5, 0.05, key="label_threshold")

try:
    record = store.image(state["label_image"]) if "label_image" in state else None
except ValueError:  # deleted meanwhile
    record = None
if record is None or (where is not None and record.split != where):
    record = store.images_page(0, 1, where)[0]
    state["label_image"] = record.id
# what the store holds for this image now, read once per run
saved = [{"label": name, "xyxy": [round(float(v), 2) for v in xyxy], "suggested": False}
         for xyxy, name, _ in store.boxes(record.id)]
version = store.version(record.id)


def load() -> None:
    """(Re)load the editor from the store; a new canvas key makes the canvas redraw."""
    # a never-used canvas key: the canvas redraws, and no old drawing comes back under it
    state["canvas_nonce"] = state.get("canvas_nonce", 0) + 1
    state["edit"] = {"image_id": record.id, "version": version, "boxes": saved, "nonce": state["canvas_nonce"]}


if state.get("edit", {}).get("image_id") != record.id:
    load()
edit = state["edit"]
width, height, scale = ui.canvas_size(record.width, record.height)
key = f"canvas-{record.id}-{edit['nonce']}"

position = store.image_index(record.id, where)
st.caption(f"Image {position + 1} of {total} · **{store.count_images(where, True)} of {total} labeled** · "
           f"{record.original_name or record.sha256[:12]} · {record.width}×{record.height} px · {record.split}"
           + (" · labeled" if record.labeled else " · not labeled yet"))

if version != edit["version"]:
    if edit["boxes"] == saved or not edit.get("dirty"):
        load()
        edit = state["edit"]
        key = f"canvas-{record.id}-{edit['nonce']}"
        st.info("Another session saved this image: showing its boxes.")
    else:
        st.warning("Another session saved this image since you opened it: your view is stale. Save to replace "
                   "their boxes with yours (the later save wins), or Revert to see theirs.")

result = st_canvas(background_image=record.path.read_bytes(), width=width, height=height,
                   drawing_mode="labeled_rect", label=new_class, stroke_color=ui.NEW_COLOR, stroke_width=3,
                   fill_color="rgba(0, 0, 0, 0)", initial_drawing=ui.boxes_to_objects(edit["boxes"], scale),
                   font_size=14, key=key)
current = ui.canvas_boxes(result, scale, record.width, record.height)
if current is None:
    current = edit["boxes"]
dirty = [(b["label"], b["xyxy"]) for b in current] != [(b["label"], b["xyxy"]) for b in saved] \
    or any(b["suggested"] for b in current)
edit["dirty"] = dirty
suggested = sum(b["suggested"] for b in current)
st.caption(f"{len(current)} boxes" + (f" ({suggested} suggested, orange)" if suggested else "")
           + (" · **unsaved changes**" if dirty else " · saved") +
           " — drag on the image to draw a box. Toolbar: ✎ edit (move, resize, click a selected box to change "
           "its class), delete selected, undo, redo. Keys: S save · N next · P previous · U next unlabeled · "
           "G suggest boxes.")


def save(boxes: list[dict], image_id: int, opened_version: int, then: int | None = None) -> None:
    """Button callback: store ``boxes`` as the image's ground truth, then show image ``then``.

    Callbacks get the values of the run that drew the button, so a click that Streamlit
    delivers to two runs (a rerun racing the click) saves once and moves once.
    """
    unknown = sorted({b["label"] for b in boxes} - set(classes))
    if unknown:
        state["flash"] = [("error", f"Unknown class {unknown}: choose one of {list(classes)} (turn on edit and "
                                    f"click the box to relabel it).")]
        return
    dets = Detections.from_names(np.array([b["xyxy"] for b in boxes], np.float32).reshape(-1, 4),
                                 [b["label"] for b in boxes], store.class_names())
    now = store.version(image_id)
    same = [(n, [round(float(v), 2) for v in x]) for x, n, _ in store.boxes(image_id)] == \
        [(b["label"], b["xyxy"]) for b in boxes]
    if not (now > opened_version and same):  # else: this very save already landed
        version = store.set_boxes(image_id, dets)
        notes = [("success", f"Saved {len(boxes)} boxes on image {image_id}.")]
        if version != opened_version + 1:
            notes.append(("warning", "Saved — over boxes another session had saved meanwhile (the later save "
                                     "wins)."))
        state["flash"] = notes
    state.pop("edit", None)  # reload from the store
    move(then if then is not None else image_id, dirty=False)


def move(target: int | None, dirty: bool) -> None:
    """Button callback: show image ``target``; with unsaved changes, ask first."""
    if target is None:
        state["flash"] = [("success", f"All {total} images here are labeled.")]
    elif dirty:
        state["pending"] = target
    else:
        state["label_image"] = target
        state.pop("pending", None)


# Button keys carry the image: a click on a page still showing image A that Streamlit handles
# after a run has drawn image B's buttons would otherwise run B's callback (move twice). With
# keys per image it finds A's button (same target) or none, never B's.
here = record.id
buttons = st.columns(6)
buttons[0].button("Save", type="primary", shortcut="S", key=f"save-{here}", on_click=save,
                  args=(current, record.id, edit["version"]))
if buttons[1].button("Suggest boxes", shortcut="G", key=f"suggest-{here}"):
    with st.spinner("Detecting…"):
        found = ui.detector(store).predict(record.path).with_class_names(store.class_names()).above(threshold)
    kept = list(current)
    for xyxy, name, score in found:
        box = [round(float(v), 2) for v in xyxy]
        if all(ui.box_iou(box, b["xyxy"]) < 0.5 for b in kept):
            kept.append({"label": name, "xyxy": box, "suggested": True})
    state["canvas_nonce"] = state.get("canvas_nonce", 0) + 1
    state["edit"] = {**edit, "boxes": kept, "nonce": state["canvas_nonce"]}
    st.rerun()
if buttons[2].button("Revert", key=f"revert-{here}", disabled=not dirty):
    load()
    st.rerun()
unlabeled = store.next_unlabeled(record.id, where)
targets = {"prev": ("◀ Previous", "P", store.images_page((position - 1) % total, 1, where)[0].id),
           "next": ("Next ▶", "N", store.images_page((position + 1) % total, 1, where)[0].id),
           "unlabeled": ("Next unlabeled", "U", unlabeled.id if unlabeled else None)}
for column, (name, (label, shortcut, target)) in zip(buttons[3:], targets.items()):
    column.button(label, shortcut=shortcut, key=f"{name}-{here}", on_click=move, args=(target, dirty))

if state.get("pending") is not None:
    st.warning("This image has unsaved changes.")
    a, b, c = st.columns(3)
    a.button("Save and go", type="primary", key=f"save_go-{here}", on_click=save,
             args=(current, record.id, edit["version"], state["pending"]))
    b.button("Discard and go", key=f"discard_go-{here}", on_click=move, args=(state["pending"], False))
    c.button("Stay", key=f"stay-{here}", on_click=lambda: state.pop("pending", None))
