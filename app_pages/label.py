"""Label: draw, move, resize, relabel and delete cow boxes on the image (zoom and pan for large
frames); suggestions (stored, or from the model) to accept or edit; save."""

import streamlit as st
from streamlit_drawable_canvas import st_canvas

import ui
from cowdetect.accounts import PermissionDenied

st.title("Label")
store = ui.store()
if not store.count_images():
    st.info("No images yet: add some on the Data page, or generate the demo data on the Home page.")
    st.stop()
if "label_editor" not in st.session_state:
    st.session_state["label_editor"] = ui.LabelEditor(store)
editor: ui.LabelEditor = st.session_state["label_editor"]  # the edit state: ui/editor.py
editor.store = store  # this run's: acts as the session's user with their role as of now
may_label = store.user.may("label")
if not may_label:
    st.caption(f"You are signed in as a {store.user.role}: you can look and try boxes, not save them (that needs "
               "the labeler role).")

for kind, text in editor.take_flash():
    getattr(st, kind)(text)
top = st.columns([2, 2, 2, 3, 2])
split = top[0].selectbox("Images", ["all", "train", "val", "test", "unassigned"], key="label_split")
where = None if split == "all" else split
if not editor.open(where):
    st.info(f"No images in {split}.")
    st.stop()
orders = {"most uncertain first": "uncertainty", "in order": "id"}
order = orders[top[1].selectbox("Next to label", list(orders), key="label_order")]
new_class = top[2].selectbox("Class for new boxes", store.classes(), key="label_class")
threshold = top[3].slider("Suggestion score threshold", 0.05, 0.95, 0.5, 0.05, key="label_threshold")
tiles = ui.tiles_picker("label_tiles", top[4])

record, total, view = editor.record, editor.total, editor.view
states = store.count_states(where)
by = f" by {editor.suggestions.source}" if editor.suggestions else ""
st.caption(f"Image {editor.position + 1} of {total} · **{states['labeled']} of {total} labeled**, "
           f"{states['suggested']} suggested, {states['unlabeled']} unlabeled · "
           f"{record.original_name or record.sha256[:12]} · {record.width}×{record.height} px · {record.split} · "
           f"**{editor.state}**{by}" + (f" · {record.source_text}" if record.source_text else ""))
if editor.news in ("reloaded", "stale"):
    (st.info if editor.news == "reloaded" else st.warning)(ui.NEWS[editor.news])

left, side = st.columns([4, 1])
with left:  # the canvas gets the part of the image in view, at its own size (ui/zoom.py)
    result = st_canvas(background_image=ui.view_image(record.path, view), width=view.canvas_w,
                       height=view.canvas_h, drawing_mode="labeled_rect", label=new_class, stroke_color=ui.NEW_COLOR,
                       stroke_width=3, fill_color="rgba(0, 0, 0, 0)",
                       initial_drawing=ui.boxes_to_objects(editor.boxes, view), font_size=14, key=editor.canvas_key)
current = editor.update(ui.canvas_boxes(result, view))
suggested = sum(b["suggested"] for b in current)
left.caption(f"{len(current)} boxes" + (f" ({suggested} suggested, orange)" if suggested else "")
             + (" · **unsaved changes**" if editor.dirty else " · not saved yet" if suggested else " · saved") +
             " — drag on the image to draw a box. Toolbar: ✎ edit (move, resize, click a selected box to change "
             "its class), delete selected, undo, redo. Keys: S save · A accept all and go on · N next · P previous "
             "· U next unlabeled · G suggest boxes · Z/X zoom in/out · F fit · J I K L pan.")

# Callbacks get the values of the run that drew their button (see LabelEditor.save), and button
# keys carry the image: a click on a page still showing image A that Streamlit handles after a
# run has drawn image B's buttons would otherwise run B's callback (move twice). With keys per
# image it finds A's button (same target) or none, never B's.
here, dirty, targets = record.id, editor.dirty, editor.targets(order)
side.caption(view.describe())
if view.zoom > 1:
    side.image(ui.overview(ui.thumbnail(str(record.path), 200), view))
for n, (label, shortcut, how) in enumerate(ui.MOVES):  # zoom in, out, fit; then a row of pan buttons
    if n == 3:
        pan = side.columns(4)
    target = view.moved(how)
    (side if n < 3 else pan[n - 3]).button(label, shortcut=shortcut, key=f"view-{shortcut}-{here}",
                                          disabled=target == view, on_click=editor.set_view,
                                          args=(current, here, target))
buttons = st.columns(7)
buttons[0].button("Save", type="primary", shortcut="S", key=f"save-{here}", on_click=editor.save,
                  args=(current, here, editor.version), disabled=not may_label)
buttons[1].button("Accept all", shortcut="A", key=f"accept-{here}", on_click=editor.save,
                  args=(current, here, editor.version, targets["unlabeled"]), help="Save and go to the next to label",
                  disabled=not may_label or not any(b["suggested"] for b in current))  # S saves an image with no cow
if buttons[2].button("Suggest boxes", shortcut="G", key=f"suggest-{here}", disabled=not may_label):
    try:
        box, model_label = ui.detector_for(store, "active")
        with st.spinner("Detecting…"):
            found = box.predict(record.path, tiles=tiles).with_class_names(store.class_names()).above(threshold)
        editor.suggest(found, current, model_label, threshold)  # stored as the image's suggestion set
    except (ValueError, PermissionDenied) as exc:  # e.g. a grid too fine for this image; the role
        st.error(str(exc))
        st.stop()
    st.rerun()
if buttons[3].button("Revert", key=f"revert-{here}", disabled=not dirty):
    editor.load()
    st.rerun()
for column, (name, label, shortcut) in zip(buttons[4:], (("prev", "◀ Previous", "P"), ("next", "Next ▶", "N"),
                                                          ("unlabeled", "Next unlabeled", "U"))):
    column.button(label, shortcut=shortcut, key=f"{name}-{here}", on_click=editor.move, args=(targets[name], dirty))

if editor.pending is not None:
    st.warning("This image has unsaved changes.")
    a, b, c = st.columns(3)
    a.button("Save and go", type="primary", key=f"save_go-{here}", on_click=editor.save,
             args=(current, here, editor.version, editor.pending), disabled=not may_label)
    b.button("Discard and go", key=f"discard_go-{here}", on_click=editor.move, args=(editor.pending, False))
    c.button("Stay", key=f"stay-{here}", on_click=editor.stay)
