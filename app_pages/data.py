"""Data: add images (files, zips, COCO, Deep Lake, frames of a video), set splits, pre-label, browse, export."""

import json

import streamlit as st

import ui
from cowdetect.accounts import PermissionDenied
from cowdetect.formats import DEEPLAKE_COCO, IMAGE_SUFFIXES, export_coco, import_coco, import_deeplake, \
    import_images, yolo_zip
from cowdetect.import_roots import HOW_TO_ALLOW, allowed_dataset, import_roots

st.title("Data")
store = ui.store()
SPLITS = ["unassigned", "train", "val", "test"]
may_import, may_label = store.user.may("import"), store.user.may("label")
if not may_import:
    st.caption(f"You are signed in as a {store.user.role}: you can browse and export; adding images and changing "
               "splits needs the labeler role.")
roots = import_roots()

add_files, add_coco, add_deeplake, add_video = st.tabs(["Upload images", "Import COCO", "Import Deep Lake",
                                                      "Frames from a video"])
with add_files, st.form("upload", clear_on_submit=True):
    files = st.file_uploader("Images (jpg, png, webp, bmp) or zips of them", accept_multiple_files=True,
                             type=[s.lstrip(".") for s in IMAGE_SUFFIXES] + ["zip"])
    split = st.selectbox("Split", SPLITS, key="upload_split")
    if st.form_submit_button("Add images", type="primary", disabled=not may_import):
        if files:
            try:
                ui.import_report(import_images(store, [(f.name, f.getvalue()) for f in files], split=split))
            except PermissionDenied as exc:
                st.error(str(exc))
        else:
            st.warning("Choose some images or zips first.")
with add_coco, st.form("coco"):
    coco_file = st.file_uploader("COCO instances JSON", type=["json"])
    images_zip = st.file_uploader("Its images, as a zip", type=["zip"])
    if roots:
        folder = st.text_input("…or the images folder on this server (e.g. a COCO 2017 download), inside "
                               + " or ".join(f"`{r}`" for r in roots), key="coco_dir")
    else:
        folder = ""
        st.caption(HOW_TO_ALLOW)
    c1, c2 = st.columns(2)
    category = c1.text_input("Category ('all' for every category)", "cow", key="coco_category")
    coco_split = c2.selectbox("Split", SPLITS, key="coco_split")
    if st.form_submit_button("Import COCO", type="primary", disabled=not may_import):
        try:
            if coco_file is None:
                raise ValueError("choose the COCO instances JSON file first")
            images, unpack = ui.coco_images(images_zip, folder)
            report = import_coco(store, coco_file.getvalue(), images, None if category == "all" else category,
                                 coco_split)
            report.skipped[:0] = unpack.skipped
            ui.import_report(report)
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))
with add_deeplake, st.form("deeplake"):
    source = st.text_input("Deep Lake dataset (hub://…, or a folder inside an import folder the admin allowed)",
                           DEEPLAKE_COCO, key="dl_source")
    d1, d2, d3 = st.columns(3)
    dl_category = d1.text_input("Category", "cow", key="dl_category")
    limit = d2.number_input("At most this many images", 1, 100_000, 100, key="dl_limit")
    dl_split = d3.selectbox("Split", SPLITS, key="dl_split")
    if st.form_submit_button("Import from Deep Lake", type="primary", disabled=not may_import):
        try:
            with st.spinner(f"Reading {source}…"):
                ui.import_report(import_deeplake(store, allowed_dataset(source), dl_category or None, int(limit),
                                                 dl_split))
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))
with add_video:
    ui.frames_from_video(store)

counts = store.counts()
if not counts["images"]:
    st.info("No images yet: upload some above, or generate the demo data on the Home page.")
    st.stop()

st.subheader("Splits")
splits = counts["splits"]
st.caption(f"{counts['images']} images, {counts['labeled_images']} labeled, {counts['boxes']} boxes — train "
           f"{splits['train']} · val {splits['val']} · test {splits['test']} · unassigned {splits['unassigned']}")
with st.form("splits"):
    s = st.columns(4)
    shares = [s[i].number_input(f"{name} %", 0, 100, pct, key=f"pct_{name.lower()}")
              for i, (name, pct) in enumerate((("Train", 70), ("Val", 15), ("Test", 15)))]
    seed = s[3].number_input("Seed", 0, 10_000, 0, key="split_seed")
    if st.form_submit_button(f"Split the {splits['unassigned']} unassigned images",
                             disabled=not splits["unassigned"] or not may_label):
        try:
            st.success(", ".join(f"{n} → {s}" for s, n in store.assign_splits(tuple(shares), int(seed)).items()))
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))

st.subheader("Pre-label")
ui.prelabel_panel(store)

st.subheader("Browse")
b1, b2, b3 = st.columns(3)
browse_split = b1.selectbox("Split", ["all", *SPLITS], key="browse_split")
where, per_page = None if browse_split == "all" else browse_split, 24
pages = max(1, -(-store.count_images(where) // per_page))
page = b2.number_input(f"Page (of {pages})", 1, pages, 1, key="browse_page")
target = b3.selectbox("Move this page to", ["—", *SPLITS], key="browse_move", disabled=not may_label)
records = store.images_page((page - 1) * per_page, per_page, where)

if target != "—":
    ui.move_button(store, records, target, "browse_move", b3)
ui.show_flash("move_flash")
boxes, states = store.box_counts([r.id for r in records]), store.image_states([r.id for r in records])
ui.thumbnail_grid(records, [f"#{r.id} · {r.split} · " + (f"{boxes[r.id]} cows" if r.labeled else states[r.id])
                            for r in records])

st.subheader("Export")
e1, e2 = st.columns(2)
export_split = e1.selectbox("Split", ["all", "train", "val", "test"], key="export_split")
if e1.button("Prepare COCO JSON"):
    coco = export_coco(store, None if export_split == "all" else export_split)
    e1.download_button(f"Download COCO JSON ({len(coco['images'])} images, {len(coco['annotations'])} boxes)",
                       json.dumps(coco, indent=1), f"cowdetect-{export_split}.json", "application/json")
if e2.button("Prepare YOLO zip"):
    data, written = yolo_zip(store)
    e2.download_button(f"Download YOLO dataset ({', '.join(f'{s} {n}' for s, n in written.items())})",
                       data, "cowdetect-yolo.zip", "application/zip")
