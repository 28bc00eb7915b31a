"""Predictions: is each prediction right? Ground truth and predictions side by side, TP / FP / FN at IoU 0.5."""

import pandas as pd
import streamlit as st

import ui
from cowdetect.draw import draw_detections
from cowdetect.images import load_image
from cowdetect.metrics import match

st.title("Predictions")
store = ui.store()
params = st.query_params
models = ui.model_choices(store)
if params.get("model") in models and "pred_model" not in st.session_state:
    st.session_state["pred_model"] = params["model"]
c1, c2, c3, c4 = st.columns(4)
model = c1.selectbox("Model", list(models), format_func=models.get, key="pred_model")
threshold = c2.slider("Score threshold", 0.05, 0.95, 0.5, 0.05, key="pred_threshold")
tiles = ui.tiles_picker("pred_tiles", c3)
overlay = c4.toggle("Overlay on one image", False, key="pred_overlay")
source = st.radio("Image", ["stored", "upload"], horizontal=True, key="pred_source")

gt = None
if source == "upload":
    upload = st.file_uploader("An image (jpg, png, webp, bmp)", type=["jpg", "jpeg", "png", "webp", "bmp"])
    if upload is None:
        st.info("Upload an image to see what the model finds in it.")
        st.stop()
    try:
        rgb = load_image(upload.getvalue(), upload.name)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    title = upload.name
else:
    if not store.count_images():
        st.info("No images yet: add some on the Data page, or generate the demo data on the Home page.")
        st.stop()
    order = st.radio("Order", ["in order", "worst first"], horizontal=True, key="pred_order",
                     help="worst first: by per-image AP in this model's latest evaluation (Evaluate page)")
    ids = ui.worst_first(store, model, tiles) if order == "worst first" else None
    if order == "worst first" and not ids:
        st.info("No evaluation of this model yet: run one on the Evaluate page. Showing images in order.")
    total = len(ids) if ids else store.count_images()
    if params.get("image") and "pred_pos" not in st.session_state:
        wanted = int(params["image"])
        st.session_state["pred_pos"] = (ids.index(wanted) if ids and wanted in ids else
                                        store.image_index(wanted) if not ids else 0) + 1
    position = st.number_input(f"Image (1 to {total})", 1, max(1, total), key="pred_pos")
    image_id = ids[position - 1] if ids else store.images_page(position - 1, 1)[0].id
    try:
        record = store.image(image_id)
    except ValueError:
        st.warning(f"Image {image_id} was deleted since that evaluation; choose another.")
        st.stop()
    rgb, gt, title = load_image(record.path), store.boxes(record.id), \
        f"#{record.id} {record.original_name or ''} · {record.split}"

try:
    box, label = ui.detector_for(store, model)  # loaded only once there is an image to run it on
except ValueError as exc:  # e.g. the version was deleted in another session
    st.error(str(exc))
    st.stop()
try:
    with st.spinner("Detecting…"):
        found = box.predict(rgb, tiles=tiles).above(threshold)
except ValueError as exc:  # e.g. a grid too fine for this image
    st.error(str(exc))
    st.stop()
scored = found.with_class_names(store.class_names())  # the dataset's classes, matched by name
others = found[[n not in store.classes() for n in found.names]] if len(found) else found
tp, matched = match(scored, gt, 0.5) if gt is not None else (None, None)
GT, TP, FP, FN, OTHER = (255, 214, 0), (0, 200, 83), (229, 57, 53), (41, 121, 255), (158, 158, 158)
legend = "**:green[■ true positive]** · **:red[■ false positive]** · **:blue[■ missed cow (false negative)]** · " \
         "**:gray[■ class not in the dataset]** · ground truth **:orange[■ yellow]**"
st.markdown(f"{title} · model **{label}** · IoU 0.5 · score ≥ {threshold:.2f}  \n{legend}")
pred_img = draw_detections(rgb, others, color=OTHER) if len(others) else rgb
if gt is not None:
    pred_img = draw_detections(pred_img, scored[tp], color=TP)
    pred_img = draw_detections(pred_img, scored[~tp], color=FP)
    pred_img = draw_detections(pred_img, gt[~matched], color=FN, show_scores=False)
    m1, m2, m3 = st.columns(3)
    m1.metric("True positives", int(tp.sum()))
    m2.metric("False positives", int((~tp).sum()))
    m3.metric("Missed cows", int((~matched).sum()))
else:
    pred_img = draw_detections(pred_img, scored, color=TP)
if overlay or gt is None:
    st.image(pred_img, width="stretch")
else:
    left, right = st.columns(2)
    left.image(draw_detections(rgb, gt, color=GT, show_scores=False), caption="ground truth", width="stretch")
    right.image(pred_img, caption="predictions", width="stretch")

view = found.to_detectron2()
rows = pd.DataFrame({"pred_classes": view["pred_classes"], "class_names": view["class_names"],
                     "detectron2 id": [ui.detectron2_id(box, c) for c in view["pred_classes"]],
                     "pred_boxes": [str(b) for b in view["pred_boxes"]], "scores": view["scores"]})
if gt is not None and len(rows):
    verdict = iter("TP" if t else "FP" for t in tp)
    rows["result"] = [next(verdict) if n in store.classes() else "not scored" for n in view["class_names"]]
st.dataframe(rows, hide_index=True, width="stretch")
st.caption("pred_classes are the model's class ids: for a COCO model torchvision's category ids (1 person, "
           "18 dog, 21 cow); the seed's detectron2 numbered the 80 real categories from 0 (0 person, 16 dog, "
           "19 cow) — the 'detectron2 id' column. Boxes are xyxy pixels."
           + (f" {box.config.score_group[0]}'s score combines the scores of {', '.join(box.config.score_group)}: "
              "at a few pixels COCO's SSD cannot tell these apart." if box.config.score_group else ""))
