"""Evaluate: is the new model better, and where does it still fail? mAP of model versions, side by side."""

import json

import streamlit as st

import ui
from cowdetect import jobs
from cowdetect.accounts import PermissionDenied
from cowdetect.metrics import worst_first

st.title("Evaluate")
store = ui.store()
choices = ui.model_choices(store, active=False, newest_first=False)
c1, c2, c3 = st.columns([3, 1, 1])
picked = c1.multiselect("Model versions (before → after: pick the older first)", list(choices),
                        default=list(choices)[-2:], format_func=choices.get, key="eval_models")
split = c2.selectbox("Split", ["test", "val", "train"], key="eval_split")
tiles = ui.tiles_picker("eval_tiles", c3)
if not picked:
    st.info("Pick one or more model versions.")
    st.stop()

settings, problems = {}, []
for model in picked:
    try:
        settings[model] = jobs.evaluation_settings(store, model, split, tiles=tiles)
    except ValueError as exc:
        problems.append(str(exc))
for problem in dict.fromkeys(problems):
    st.error(problem)
if not settings:
    st.stop()

cached = {m: jobs.cached_evaluation(store, s) for m, s in settings.items()}
missing = {settings[m]["model"] for m, r in cached.items() if r is None}  # as the runs store them
jobs.mark_interrupted(store)
may_evaluate = store.user.may("evaluate")
if missing and st.button(f"Evaluate {len(missing)} model(s) on {split}", type="primary", disabled=not may_evaluate,
                         help="background runs (need the trainer role)"):
    try:
        for model, result in cached.items():
            if result is None:
                ui.launch(store, jobs.create_evaluation_run, settings[model])
    except (ValueError, PermissionDenied) as exc:
        st.error(str(exc))
        st.stop()
    st.rerun()


def evaluating() -> list:
    return [r for r in store.runs("evaluate") if r.active and r.params["split"] == split]


@st.fragment(run_every=1)
def progress() -> None:
    jobs.mark_interrupted(store)
    running = evaluating()
    if not running:
        st.rerun(scope="app")  # all done: show the results
    for run in running:
        ui.progress_bar(run, "image", label=f"{run.params['model_label']}: ")


active = evaluating()
if active:
    progress()
failed = [r for r in store.runs("evaluate") if r.status == "failed" and r.params["split"] == split
          and r.params["model"] in missing]
for run in failed[:3]:
    st.error(f"{run.params['model_label']}: {run.error}")
done = {m: r for m, r in cached.items() if r is not None}
if not done:
    st.info("Evaluating…" if active else f"Not evaluated on this version of the {split} split yet: press Evaluate.")
    st.stop()

labels = {m: settings[m]["model_label"] for m in done}
table = ui.comparison_table(done, labels)
st.dataframe(table, width="stretch")
if len(done) >= 2:
    first, last = done[list(done)[0]].metrics, done[list(done)[-1]].metrics
    a, b = first["map"], last["map"]
    change = f", {(b - a) / a * 100:+.0f} %" if a > 0 else ""
    st.subheader(f"mAP {a:.3f} → {b:.3f} ({b - a:+.3f}{change})")
    st.caption(f"{labels[list(done)[0]]} → {labels[list(done)[-1]]} on {split}; mAP50 {first['map_50']:.3f} → "
               f"{last['map_50']:.3f}")
left, right = st.columns(2)
left.bar_chart(table[["mAP@[.5:.95]", "mAP50", "mAP75"]].T, stack=False, height=260, y_label="score")
right.line_chart(ui.pr_curves(done, labels), x_label="recall", y_label="precision at IoU 0.5", height=260)

st.subheader("Per image, worst first")
shown = st.selectbox("Model", list(done), index=len(done) - 1, format_func=labels.get, key="eval_per_image")
rows = worst_first(done[shown].metrics["per_image"])[:50]
for link, row in zip(st.columns(3), rows[:3]):
    link.page_link("app_pages/predictions.py", icon="🔍", query_params={"image": row["image_id"], "model": shown},
                   label=f"Image #{row['image_id']}: AP {max(row['ap'], 0):.2f}, {row['fn']} missed, "
                         f"{row['fp']} false positives")
per_image = ui.per_image_table(rows, shown, lambda image_id: ui.image_uri(store, image_id))
deleted = per_image["image"].isna().sum()
if deleted:
    st.warning(f"{deleted} image(s) of this evaluation were deleted since; evaluate again for current numbers.")
st.dataframe(per_image, hide_index=True, width="stretch", row_height=60, column_config={
    "image": st.column_config.ImageColumn("image"),
    "open": st.column_config.LinkColumn("predictions", display_text="open ›")})

st.subheader("History")
history = ui.results_table(store.results())
st.dataframe(history, hide_index=True, width="stretch")
d1, d2 = st.columns(2)
d1.download_button("History as CSV", history.to_csv(index=False), "evaluations.csv", "text/csv")
d2.download_button("History as JSON (with per-class and per-image detail)",
                   json.dumps([r.as_dict() for r in store.results()], indent=1), "evaluations.json", "application/json")
