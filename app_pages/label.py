"""Label: draw, move, resize, relabel and delete cow boxes on the image; model suggestions; save."""

import streamlit as st
from streamlit_drawable_canvas import st_canvas

import ui

st.title("Label")
store = ui.store()
if not store.count_images():
    st.info("No images yet: add some on the Data page, or generate the demo data on the Home page.")
    st.stop()
if "label_editor" not in st.session_state:
    st.session_state["label_editor"] = ui.LabelEditor(store)
editor: ui.LabelEditor = st.session_state["label_editor"]  # the edit state: ui/editor.py

for kind, text in editor.take_flash():
    getattr(st, kind)(text)
top = st.columns([2, 2, 3, 2])
split = top[0].selectbox("Images", ["all", "train", "val", "test", "unassigned"], key="label_split")
where = None if split == "all" else split
if not editor.open(where):
    st.info(f"No images in {split}.")
    st.stop()
new_class = top[1].selectbox("Class for new boxes", store.classes(), key="label_class")
threshold = top[2].slider("Suggestion score threshold", 0.05, 0.95, 0.5, 0.05, key="label_threshold")
tiles = ui.tiles_picker("label_tiles", top[3])

record, total = editor.record, editor.total
width, height, scale = ui.canvas_size(record.width, record.height)
st.caption(f"Image {editor.position + 1} of {total} · **{store.count_images(where, True)} of {total} labeled** · "
           f"{record.original_name or record.sha256[:12]} · {record.width}×{record.height} px · {record.split}"
           + (" · labeled" if record.labeled else " · not labeled yet"))
if editor.news == "reloaded":
    st.info("Another session saved this image: showing its boxes.")
elif editor.news == "stale":
    st.warning("Another session saved this image since you opened it: your view is stale. Save to replace "
               "their boxes with yours (the later save wins), or Revert to see theirs.")

result = st_canvas(background_image=record.path.read_bytes(), width=width, height=height,
                   drawing_mode="labeled_rect", label=new_class, stroke_color=ui.NEW_COLOR, stroke_width=3,
                   fill_color="rgba(0, 0, 0, 0)", initial_drawing=ui.boxes_to_objects(editor.boxes, scale),
                   font_size=14, key=editor.canvas_key)
current = editor.update(ui.canvas_boxes(result, scale, record.width, record.height))
suggested = sum(b["suggested"] for b in current)
st.caption(f"{len(current)} boxes" + (f" ({suggested} suggested, orange)" if suggested else "")
           + (" · **unsaved changes**" if editor.dirty else " · saved") +
           " — drag on the image to draw a box. Toolbar: ✎ edit (move, resize, click a selected box to change "
           "its class), delete selected, undo, redo. Keys: S save · N next · P previous · U next unlabeled · "
           "G suggest boxes.")

# Callbacks get the values of the run that drew their button (see LabelEditor.save), and button
# keys carry the image: a click on a page still showing image A that Streamlit handles after a
# run has drawn image B's buttons would otherwise run B's callback (move twice). With keys per
# image it finds A's button (same target) or none, never B's.
here, dirty = record.id, editor.dirty
buttons = st.columns(6)
buttons[0].button("Save", type="primary", shortcut="S", key=f"save-{here}", on_click=editor.save,
                  args=(current, here, editor.version))
if buttons[1].button("Suggest boxes", shortcut="G", key=f"suggest-{here}"):
    box, _ = ui.detector_for(store, "active")
    try:
        with st.spinner("Detecting…"):
            found = box.predict(record.path, tiles=tiles).with_class_names(store.class_names()).above(threshold)
    except ValueError as exc:  # e.g. a grid too fine for this image
        st.error(str(exc))
        st.stop()
    editor.suggest(found, current)
    st.rerun()
if buttons[2].button("Revert", key=f"revert-{here}", disabled=not dirty):
    editor.load()
    st.rerun()
targets = editor.targets()
for column, (name, label, shortcut) in zip(buttons[3:], (("prev", "◀ Previous", "P"), ("next", "Next ▶", "N"),
                                                          ("unlabeled", "Next unlabeled", "U"))):
    column.button(label, shortcut=shortcut, key=f"{name}-{here}", on_click=editor.move, args=(targets[name], dirty))

if editor.pending is not None:
    st.warning("This image has unsaved changes.")
    a, b, c = st.columns(3)
    a.button("Save and go", type="primary", key=f"save_go-{here}", on_click=editor.save,
             args=(current, here, editor.version, editor.pending))
    b.button("Discard and go", key=f"discard_go-{here}", on_click=editor.move, args=(editor.pending, False))
    c.button("Stay", key=f"stay-{here}", on_click=editor.stay)
