"""Data: add images (files, zips, COCO, Deep Lake), set splits, browse, export COCO JSON and YOLO."""

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from cowdetect.formats import DEEPLAKE_COCO, IMAGE_SUFFIXES, export_coco, export_yolo, import_coco, import_deeplake, \
    import_images, zip_entries, ImportReport

st.title("Data")
store = ui.store()
SPLITS = ["unassigned", "train", "val", "test"]


def show(report: ImportReport) -> None:
    (st.success if report.added or report.already_present else st.warning)(report.summary())
    if report.skipped:
        st.dataframe(pd.DataFrame(report.skipped, columns=["skipped", "why"]), hide_index=True, width="stretch")


add_files, add_coco, add_deeplake = st.tabs(["Upload images", "Import COCO", "Import Deep Lake"])
with add_files:
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Images (jpg, png, webp, bmp) or zips of them", accept_multiple_files=True,
                                 type=[s.lstrip(".") for s in IMAGE_SUFFIXES] + ["zip"])
        split = st.selectbox("Split", SPLITS, key="upload_split")
        if st.form_submit_button("Add images", type="primary"):
            if files:
                show(import_images(store, [(f.name, f.getvalue()) for f in files], split=split))
            else:
                st.warning("Choose some images or zips first.")
with add_coco:
    with st.form("coco"):
        coco_file = st.file_uploader("COCO instances JSON", type=["json"])
        images_zip = st.file_uploader("Its images, as a zip", type=["zip"])
        folder = st.text_input("…or the images folder on this server (e.g. a COCO 2017 download)", key="coco_dir")
        c1, c2 = st.columns(2)
        category = c1.text_input("Category ('all' for every category)", "cow", key="coco_category")
        coco_split = c2.selectbox("Split", SPLITS, key="coco_split")
        if st.form_submit_button("Import COCO", type="primary"):
            try:
                if coco_file is None:
                    raise ValueError("choose the COCO instances JSON file first")
                if images_zip is not None:
                    unpack = ImportReport()
                    images = dict(zip_entries(images_zip.getvalue(), images_zip.name, unpack))
                elif folder and Path(folder).is_dir():
                    images, unpack = Path(folder), ImportReport()
                elif folder:
                    raise ValueError(f"{folder} is not a folder on this server")
                else:
                    raise ValueError("give the images: a zip, or a folder on this server")
                report = import_coco(store, coco_file.getvalue(), images, None if category == "all" else category,
                                     coco_split)
                report.skipped[:0] = unpack.skipped
                show(report)
            except ValueError as exc:
                st.error(str(exc))
with add_deeplake:
    with st.form("deeplake"):
        source = st.text_input("Deep Lake dataset", DEEPLAKE_COCO, key="dl_source")
        d1, d2, d3 = st.columns(3)
        dl_category = d1.text_input("Category", "cow", key="dl_category")
        limit = d2.number_input("At most this many images", 1, 100_000, 100, key="dl_limit")
        dl_split = d3.selectbox("Split", SPLITS, key="dl_split")
        if st.form_submit_button("Import from Deep Lake", type="primary"):
            try:
                with st.spinner(f"Reading {source}…"):
                    show(import_deeplake(store, source, dl_category or None, int(limit), dl_split))
            except ValueError as exc:
                st.error(str(exc))

counts = store.counts()
if not counts["images"]:
    st.info("No images yet: upload some above, or generate the demo data on the Home page.")
    st.stop()

st.subheader("Splits")
splits = counts["splits"]
st.caption(f"{counts['images']} images, {counts['labeled_images']} labeled, {counts['boxes']} boxes — train "
           f"{splits['train']} · val {splits['val']} · test {splits['test']} · unassigned {splits['unassigned']}")
with st.form("splits"):
    s1, s2, s3, s4 = st.columns(4)
    train = s1.number_input("Train %", 0, 100, 70, key="pct_train")
    val = s2.number_input("Val %", 0, 100, 15, key="pct_val")
    test = s3.number_input("Test %", 0, 100, 15, key="pct_test")
    seed = s4.number_input("Seed", 0, 10_000, 0, key="split_seed")
    if st.form_submit_button(f"Split the {splits['unassigned']} unassigned images", disabled=not splits["unassigned"]):
        try:
            moved = store.assign_splits((train, val, test), int(seed))
            st.success(", ".join(f"{n} → {s}" for s, n in moved.items()))
        except ValueError as exc:
            st.error(str(exc))

st.subheader("Browse")
b1, b2, b3 = st.columns(3)
browse_split = b1.selectbox("Split", ["all", *SPLITS], key="browse_split")
where = None if browse_split == "all" else browse_split
per_page = 24
pages = max(1, -(-store.count_images(where) // per_page))
page = b2.number_input(f"Page (of {pages})", 1, pages, 1, key="browse_page")
target = b3.selectbox("Move this page to", ["—", *SPLITS], key="browse_move")
records = store.images_page((page - 1) * per_page, per_page, where)


def move_page(ids: list[int], split: str) -> None:
    """Button callback on the images the clicked page showed (their ids key the button), so a
    click Streamlit delivers to two runs cannot move the next page's images too."""
    store.set_split(ids, split)
    st.session_state["browse_move"] = "—"


if target != "—":
    ids = [r.id for r in records]
    b3.button(f"Move {len(records)} images to {target}", key=f"move-{target}-{hash(tuple(ids))}",
              on_click=move_page, args=(ids, target))
boxes = store.box_counts([r.id for r in records])
for row in range(0, len(records), 8):
    for col, record in zip(st.columns(8), records[row:row + 8]):
        col.image(ui.thumbnail(str(record.path)), width="stretch",
                  caption=f"#{record.id} · {record.split} · " + (f"{boxes[record.id]} cows" if record.labeled
                                                                  else "unlabeled"))

st.subheader("Export")
e1, e2 = st.columns(2)
export_split = e1.selectbox("Split", ["all", "train", "val", "test"], key="export_split")
chosen = None if export_split == "all" else export_split
if e1.button("Prepare COCO JSON"):
    state = export_coco(store, chosen)
    e1.download_button(f"Download COCO JSON ({len(state['images'])} images, {len(state['annotations'])} boxes)",
                       json.dumps(state, indent=1), f"cowdetect-{export_split}.json", "application/json")
if e2.button("Prepare YOLO zip"):
    scratch = store.inside("tmp")
    scratch.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        written = export_yolo(store, Path(tmp) / "yolo", with_path=False)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for path in sorted((Path(tmp) / "yolo").rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(Path(tmp) / "yolo").as_posix())
    e2.download_button(f"Download YOLO dataset ({', '.join(f'{s} {n}' for s, n in written.items())})",
                       buffer.getvalue(), "cowdetect-yolo.zip", "application/zip")
