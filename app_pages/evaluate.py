"""Evaluate: is the new model better, and where does it still fail? mAP of model versions, side by side."""

import json

import pandas as pd
import streamlit as st

import ui
from cowdetect import jobs
from cowdetect.metrics import worst_first

st.title("Evaluate")
store = ui.store()
choices = {"pretrained": "pretrained COCO"} | {str(m.id): m.name for m in store.models()}
c1, c2 = st.columns([3, 1])
picked = c1.multiselect("Model versions (before → after: pick the older first)", list(choices),
                        default=list(choices)[-2:], format_func=choices.get, key="eval_models")
split = c2.selectbox("Split", ["test", "val", "train"], key="eval_split")
if not picked:
    st.info("Pick one or more model versions.")
    st.stop()

settings, problems = {}, []
for model in picked:
    try:
        settings[model] = jobs.evaluation_settings(store, model, split)
    except ValueError as exc:
        problems.append(str(exc))
for problem in dict.fromkeys(problems):
    st.error(problem)
if not settings:
    st.stop()

cached = {m: jobs.cached_evaluation(store, s) for m, s in settings.items()}
missing = [m for m, r in cached.items() if r is None]
jobs.mark_interrupted(store)
active = {r["params"]["model"]: r for r in store.runs("evaluate")
          if r["status"] in jobs.ACTIVE and r["params"]["split"] == split}
if missing and st.button(f"Evaluate {len(missing)} model(s) on {split}", type="primary"):
    for model in missing:
        run_id = jobs.create_evaluation_run(store, settings[model])
        if store.run(run_id)["pid"] is None:
            jobs.start_worker(store, run_id)
    st.rerun()


@st.fragment(run_every=1)
def progress() -> None:
    running = [r for r in store.runs("evaluate") if r["status"] in jobs.ACTIVE and r["params"]["split"] == split]
    jobs.mark_interrupted(store)
    if not running:
        st.rerun(scope="app")  # all done: show the results
    for run in running:
        st.progress(min(1.0, run["iteration"] / max(1, run["total"])),
                    text=f"{run['params']['model_label']}: {run['status']} · image {run['iteration']} / {run['total']}")


if active:
    progress()
failed = [r for r in store.runs("evaluate") if r["status"] == "failed" and r["params"]["split"] == split
          and r["params"]["model"] in missing]
for run in failed[:3]:
    st.error(f"{run['params']['model_label']}: {run['error']}")
done = {m: r for m, r in cached.items() if r is not None}
if not done:
    st.info(f"Not evaluated on this version of the {split} split yet: press Evaluate." if not active else
            "Evaluating…")
    st.stop()

labels = {m: settings[m]["model_label"] for m in done}
table = pd.DataFrame([{"model": labels[m], "mAP@[.5:.95]": r["metrics"]["map"], "mAP50": r["metrics"]["map_50"],
                       "mAP75": r["metrics"]["map_75"], "recall@100": r["metrics"]["mar_100"],
                       **{f"AP {c}": v["ap"] for c, v in r["metrics"]["per_class"].items()},
                       "images": r["metrics"]["num_images"], "evaluated": r["created_at"]}
                      for m, r in done.items()]).set_index("model")
st.dataframe(table, width="stretch")
if len(done) >= 2:
    first, last = list(done)[0], list(done)[-1]
    a, b = done[first]["metrics"]["map"], done[last]["metrics"]["map"]
    change = f", {(b - a) / a * 100:+.0f} %" if a > 0 else ""
    st.subheader(f"mAP {a:.3f} → {b:.3f} ({b - a:+.3f}{change})")
    st.caption(f"{labels[first]} → {labels[last]} on {split}; mAP50 {done[first]['metrics']['map_50']:.3f} → "
               f"{done[last]['metrics']['map_50']:.3f}")
left, right = st.columns(2)
bars = table[["mAP@[.5:.95]", "mAP50", "mAP75"]].T
left.bar_chart(bars, stack=False, height=260, y_label="score")
curve = pd.DataFrame({labels[m]: next(iter(r["metrics"].get("pr_curve", {}).values()), [None] * 101)
                      for m, r in done.items()})
curve.index = [i / 100 for i in range(101)]
curve = curve.where(curve >= 0)
right.line_chart(curve, x_label="recall", y_label="precision at IoU 0.5", height=260)

st.subheader("Per image, worst first")
shown = st.selectbox("Model", list(done), index=len(done) - 1, format_func=labels.get, key="eval_per_image")
rows = worst_first(done[shown]["metrics"]["per_image"])[:50]


def thumb(image_id: int) -> str | None:
    try:
        record = store.image(image_id)
    except ValueError:
        return None  # deleted since this evaluation
    return ui.thumbnail_uri(str(record.path), 96)


for link, row in zip(st.columns(3), rows[:3]):
    link.page_link("app_pages/predictions.py", icon="🔍", query_params={"image": row["image_id"], "model": shown},
                   label=f"Image #{row['image_id']}: AP {max(row['ap'], 0):.2f}, {row['fn']} missed, "
                         f"{row['fp']} false positives")
per_image = pd.DataFrame([{"image": thumb(r["image_id"]), "image id": r["image_id"], "AP": r["ap"], "AP50": r["ap_50"],
                           "cows": r["n_gt"], "missed": r["fn"], "false positives": r["fp"],
                           "open": f"/predictions?image={r['image_id']}&model={shown}"} for r in rows])
deleted = per_image["image"].isna().sum() if len(per_image) else 0
if deleted:
    st.warning(f"{deleted} image(s) of this evaluation were deleted since; evaluate again for current numbers.")
st.dataframe(per_image, hide_index=True, width="stretch", row_height=60, column_config={
    "image": st.column_config.ImageColumn("image"),
    "open": st.column_config.LinkColumn("predictions", display_text="open ›")})

st.subheader("History")
history = pd.DataFrame([{"id": r["id"], "model": r["model_label"], "split": r["split"], "data": r["dataset_hash"],
                         "mAP": r["metrics"]["map"], "mAP50": r["metrics"]["map_50"], "mAP75": r["metrics"]["map_75"],
                         "when": r["created_at"]} for r in store.results()])
st.dataframe(history, hide_index=True, width="stretch")
d1, d2 = st.columns(2)
d1.download_button("History as CSV", history.to_csv(index=False), "evaluations.csv", "text/csv")
d2.download_button("History as JSON (with per-class and per-image detail)",
                   json.dumps(store.results(), indent=1), "evaluations.json", "application/json")
