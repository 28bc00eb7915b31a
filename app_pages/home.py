"""Home: what cowdetect does, the state of the data folder, who did what lately and the last backup."""

import streamlit as st

import ui
from cowdetect.accounts import PermissionDenied

st.title("🐄 cowdetect")
st.markdown(
    "Label cows in images, see a detector's predictions beside your boxes, fine-tune the "
    "detector and compare mAP before and after, and follow each cow through a video. "
    "Everything is stored in the data folder below, so nothing is lost when the app restarts."
)
store = ui.store()


@st.fragment(run_every=2)
def overview() -> None:
    counts = store.counts()
    cols = st.columns(5)
    cols[0].metric("Images", counts["images"])
    cols[1].metric("Labeled images", counts["labeled_images"])
    cols[2].metric("Cow boxes", counts["boxes"])
    cols[3].metric("Models", counts["models"])
    cols[4].metric("Videos", counts["videos"])
    splits = counts["splits"]
    st.caption(f"Splits — train {splits['train']} · val {splits['val']} · test {splits['test']} · "
               f"unassigned {splits['unassigned']}  |  data folder `{store.data_dir}`")
    if counts["images"] == 0:
        st.info("The data folder is empty. Generate the demo pasture images, boxes and video "
                "(about a minute; no internet needed), or run `python -m cowdetect demo`.")
        if st.button("Generate demo data", type="primary", disabled=not store.user.may("import"),
                     help="needs the labeler role or higher"):
            try:
                ui.start_demo_generation(store)
                st.toast("Generating demo data…")
            except PermissionDenied as exc:
                st.error(str(exc))


overview()
st.markdown(ui.active_model_note(store))

labeled = store.count_images(labeled=True)
if labeled:
    st.subheader("A few labeled images")
    picks = [store.images_page(i, 1, labeled=True)[0] for i in range(0, labeled, max(1, labeled // 4))][:4]
    for col, record in zip(st.columns(len(picks)), picks):
        col.image(ui.labeled_thumbnail(store, record.id),
                  caption=f"#{record.id} · {record.split} · {len(store.boxes(record.id))} cows")

models = store.models()
st.subheader("Models")
if models:
    st.dataframe(ui.model_table(models)[["active", "version", "architecture", "classes", "iterations", "created"]],
                 hide_index=True, width="stretch")
else:
    st.caption("No trained model yet. Train one on the Train page or with `python -m cowdetect train`.")

results = store.results()[:10]
if results:
    st.subheader("Latest evaluations")
    st.dataframe(ui.results_table(results)[["model", "split", "mAP", "mAP50", "mAP75", "when"]], hide_index=True,
                 width="stretch")

st.subheader("Recent activity")
activity = store.activity(20)
if activity:
    st.dataframe(ui.activity_table(activity), hide_index=True, width="stretch")
else:
    st.caption("Nothing recorded yet: imports, labels, runs and account changes appear here with who made them.")
st.caption(ui.backup_note(store.setting("last_backup")))
