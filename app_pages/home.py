"""Home: what cowdetect does and the state of the data folder."""

import pandas as pd
import streamlit as st

import ui

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
        if st.button("Generate demo data", type="primary"):
            ui.start_demo_generation(store)
            st.toast("Generating demo data…")


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
    st.dataframe(pd.DataFrame([{"name": m.name, "architecture": m.architecture, "classes": ", ".join(m.classes),
                                "iterations": m.params.get("iterations"), "created": m.created_at}
                               for m in models]), hide_index=True, width="stretch")
else:
    st.caption("No trained model yet. Train one with `python -m cowdetect train`.")

results = store.results()
if results:
    st.subheader("Latest evaluations")
    st.dataframe(pd.DataFrame([{"model": r["model_label"], "split": r["split"], "mAP": r["metrics"]["map"],
                                "mAP50": r["metrics"]["map_50"], "mAP75": r["metrics"]["map_75"],
                                "when": r["created_at"]} for r in results[:10]]),
                 hide_index=True, width="stretch")
