"""Train: fine-tune the detector on the labeled images in a background job, and watch it learn."""

import pandas as pd
import streamlit as st

import ui
from cowdetect import jobs
from cowdetect.models import ARCHITECTURES

st.title("Train")
store = ui.store()
counts = store.counts()
st.caption(f"{len(store.dataset('train'))} labeled training images · {len(store.dataset('val'))} validation · "
           f"{len(store.dataset('test'))} test. Runs continue in the background: close the tab, come back later.")

bases = ["pretrained"] + [m.name for m in reversed(store.models())] + [f"untrained:{a}" for a in ARCHITECTURES]
with st.form("settings"):
    base = st.selectbox("Start from", bases, help="pretrained: the COCO detector that suits this machine")
    c1, c2, c3, c4 = st.columns(4)
    iterations = c1.number_input("Iterations", 1, 100_000, 1000, key="iterations")
    batch = c2.number_input("Batch size (0 = model's)", 0, 64, 0, key="batch")
    lr = c3.number_input("Learning rate (0 = model's)", 0.0, 1.0, 0.0, format="%.4f", key="lr")
    checkpoint_every = c4.number_input("Checkpoint every", 0, 10_000, 100, key="checkpoint_every")
    c5, c6, c7, c8 = st.columns(4)
    eval_every = c5.number_input("Validate every", 0, 10_000, 100, key="eval_every")
    patience = c6.number_input("Early-stop patience (0 = off)", 0, 100, 0, key="patience")
    name = c7.text_input("Version name (optional)", key="name")
    freeze = c8.checkbox("Freeze backbone", key="freeze")
    a1, a2, a3 = st.columns(3)
    flip = a1.checkbox("Flip", True, key="flip")
    choice = {"model's default": None, "on": True, "off": False}
    colour = a2.selectbox("Colour jitter", list(choice), key="colour", help="the default is on for SSD, off for Faster R-CNN")
    scale = a3.selectbox("Scale jitter (zoom out / crop)", list(choice), key="scale",
                         help="the default is on for SSD, off for Faster R-CNN")
    estimate = st.form_submit_button("Estimate duration")
    start = st.form_submit_button("Start training", type="primary")

if estimate or start:
    try:
        settings = jobs.training_settings(
            store, base=base, iterations=int(iterations), batch_size=int(batch) or None, learning_rate=lr or None,
            checkpoint_every=int(checkpoint_every), eval_every=int(eval_every), patience=int(patience),
            horizontal_flip=flip, color_jitter=choice[colour], scale_jitter=choice[scale],
            freeze_backbone=freeze, name=name or None)
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    if estimate:
        with st.spinner("Measuring two training steps…"):
            guess = jobs.estimate_seconds(store, settings)
        st.info(f"≈ {guess['seconds_per_iteration']:.2f} s per iteration → about "
                f"{guess['total_seconds'] / 60:.1f} min for {int(iterations)} iterations (validation adds more).")
    if start:
        run_id = jobs.create_training_run(store, settings)
        if store.run(run_id)["pid"] is None:
            jobs.start_worker(store, run_id)
        st.session_state["run_id"] = run_id

runs = jobs.runs_table(store)
train_runs = [r for r in runs if r["kind"] == "train"]
if not train_runs:
    st.info("No training run yet: choose settings and press Start training.")
    st.stop()
ids = [r["id"] for r in train_runs]
chosen = st.selectbox("Run", ids, index=ids.index(st.session_state.get("run_id", ids[0])) if
                      st.session_state.get("run_id") in ids else 0,
                      format_func=lambda i: next(f"run {r['id']} · started {r['created_at']} UTC"
                                                 for r in train_runs if r["id"] == i))


@st.fragment(run_every=2)
def live(run_id: int) -> None:
    jobs.mark_interrupted(store)
    info = jobs.progress(store, run_id)
    run = info["run"]
    st.progress(min(1.0, run["iteration"] / max(1, run["total"])),
                text=f"{run['status']} · iteration {run['iteration']} / {run['total']} · checkpoint at "
                     f"{run['checkpoint_iteration']}")
    left = info["seconds_left"]
    speed = f"{info['rate']:.2f} it/s · " if run["status"] == "running" and info["rate"] else ""
    eta = f"about {left / 60:.1f} min left · " if run["status"] == "running" and left else ""
    st.caption(f"{speed}{eta}{len(info['points'])} points")
    if run["error"]:
        st.error(run["error"])
    b1, b2 = st.columns(2)
    if run["status"] in jobs.ACTIVE and b1.button("Stop", key=f"stop{run_id}"):
        jobs.request_stop(store, run_id)
    if run["status"] in ("stopped", "failed", "interrupted") and b2.button("Resume", key=f"resume{run_id}"):
        jobs.prepare_resume(store, run_id)
        jobs.start_worker(store, run_id)
    if info["points"]:
        frame = pd.DataFrame(info["points"]).set_index("iteration")
        losses = [c for c in frame.columns if c.startswith("loss")]
        smooth = st.toggle("Smoothed", True, key=f"smooth{run_id}")
        shown = frame[losses].ewm(alpha=0.1).mean() if smooth else frame[losses]
        st.line_chart(shown, x_label="iteration", y_label="loss")
    if info["val_points"]:
        val = pd.DataFrame(info["val_points"]).set_index("iteration")
        st.line_chart(val[["val_map_50", "val_map"]], x_label="iteration", y_label="validation mAP")
    metrics = run["metrics"]
    if run["status"] == "done" and metrics.get("after"):
        before, after = metrics.get("before", {}), metrics["after"]
        cols = st.columns(3)
        for col, key, label in zip(cols, ("map_50", "map", "map_75"), ("mAP50", "mAP", "mAP75")):
            col.metric(f"{label} on test", f"{after[key]:.3f}",
                       f"{after[key] - before[key]:+.3f}" if key in before else None)
        st.code(jobs.cowsay_text(metrics), language=None)


live(chosen)
