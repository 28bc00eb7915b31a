"""Train: fine-tune the detector on the labeled images in a background job, and watch it learn."""

import streamlit as st

import ui
from cowdetect import jobs
from cowdetect.accounts import PermissionDenied
from cowdetect.config import RUN_DEFAULTS, TRAIN_DEFAULTS

st.title("Train")
store = ui.store()
may_train = store.user.may("train")
st.caption(f"{len(store.dataset('train'))} labeled training images · {len(store.dataset('val'))} validation · "
           f"{len(store.dataset('test'))} test. Runs continue in the background: close the tab, come back later.")


def per_model(key: str) -> str:
    shown = {True: "on", False: "off"}
    return "the model's default: " + "; ".join(f"{a} {shown.get(d[key], d[key])}" for a, d in TRAIN_DEFAULTS.items())


with st.form("settings"):
    base = ui.model_picker(store, "Start from", key="base", active=False, untrained=True)
    c1, c2, c3, c4 = st.columns(4)
    iterations = c1.number_input("Iterations", 1, 100_000, RUN_DEFAULTS["iterations"], key="iterations")
    batch = c2.number_input("Batch size (0 = model's)", 0, 64, 0, key="batch", help=per_model("batch_size"))
    lr = c3.number_input("Learning rate (0 = model's)", 0.0, 1.0, 0.0, format="%.4f", key="lr",
                         help=per_model("learning_rate"))
    checkpoint_every = c4.number_input("Checkpoint every", 0, 10_000, RUN_DEFAULTS["checkpoint_every"],
                                       key="checkpoint_every")
    c5, c6, c7, c8 = st.columns(4)
    eval_every = c5.number_input("Validate every", 0, 10_000, RUN_DEFAULTS["eval_every"], key="eval_every")
    patience = c6.number_input("Early-stop patience (0 = off)", 0, 100, RUN_DEFAULTS["patience"], key="patience")
    name = c7.text_input("Version name (optional)", key="name")
    freeze = c8.checkbox("Freeze backbone", key="freeze")
    a1, a2, a3, a4 = st.columns(4)
    flip = a1.checkbox("Flip", True, key="flip")
    choice = {"model's default": None, "on": True, "off": False}
    colour = a2.selectbox("Colour jitter", list(choice), key="colour", help=per_model("color_jitter"))
    scale = a3.selectbox("Scale jitter (zoom out / crop)", list(choice), key="scale", help=per_model("scale_jitter"))
    nproc = a4.number_input("Processes / GPUs", 1, 64, 1, key="nproc",
                            help="1: one process. More: DistributedDataParallel through torchrun, one process per "
                                 "GPU (or CPU processes sharing the cores); the batch is shared out among them. "
                                 "Several machines: python -m cowdetect train --nnodes (README, Scale out).")
    st.caption("Small cows and forgetting: tile crops train on tile-sized windows, so distant cows are learnt at the "
               "size tiles show them; a slower backbone and mixing back the starting weights (WiSE-FT) keep what "
               "COCO taught the model, so fine-tuning on a few images of one barn does not wreck the rest.")
    r1, r2, r3 = st.columns(3)
    fraction = lambda col, label, key, values: col.selectbox(  # noqa: E731
        label, [None, *values], key=key, format_func=lambda v: "model's default" if v is None else f"{v:g}",
        help=per_model(key))
    tile_crops = fraction(r1, "Tile crops (probability)", "tile_crops", (0.0, 0.25, 0.5, 0.75))
    backbone_lr = fraction(r2, "Backbone learning rate (× heads')", "backbone_lr", (1.0, 0.3, 0.1))
    keep_start = fraction(r3, "Keep starting weights (WiSE-FT)", "keep_start", (0.0, 0.25, 0.5, 0.75))
    estimate = st.form_submit_button("Estimate duration")
    start = st.form_submit_button("Start training", type="primary", disabled=not may_train,
                                  help="a background run (needs the trainer role)")

if estimate or start:
    try:
        settings = jobs.training_settings(
            store, base=base, iterations=int(iterations), batch_size=int(batch) or None, learning_rate=lr or None,
            checkpoint_every=int(checkpoint_every), eval_every=int(eval_every), patience=int(patience),
            horizontal_flip=flip, color_jitter=choice[colour], scale_jitter=choice[scale],
            freeze_backbone=freeze, backbone_lr=backbone_lr, tile_crops=tile_crops, keep_start=keep_start,
            name=name or None, nproc=int(nproc))
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    if estimate:  # from earlier runs' progress: the page never trains
        how = (settings["architecture"], settings["config"]["batch_size"], settings["device"], settings["nproc"])
        per = jobs.seconds_per_iteration(store, *how)
        on = f"batch {how[1]}, {how[2]} × {how[3]}"
        st.info(f"≈ {per:.2f} s per iteration on earlier runs of {how[0]} ({on}) → about "
                f"{per * int(iterations) / 60:.1f} min for {int(iterations)} iterations (validation adds more)."
                if per else f"No earlier run of {how[0]} ({on}) to measure from: the time "
                "left appears once the run has done a few iterations.")
    if start:
        try:
            st.session_state["run_id"] = ui.launch(store, jobs.create_training_run, settings)
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))

jobs.mark_interrupted(store)
runs = store.runs("train")
if not runs:
    st.info("No training run yet: choose settings and press Start training.")
    st.stop()
chosen = ui.run_picker(runs, "run_id", lambda r: f"run {r.id} · {r.params['base_label']} · started {r.created_at} UTC")


@st.fragment(run_every=2)
def live(run_id: int) -> None:
    jobs.mark_interrupted(store)
    info = jobs.progress(store, run_id)
    run, left = info["run"], info["seconds_left"]
    ui.progress_bar(run, "iteration", extra=f" · checkpoint at {run.checkpoint_iteration}")
    speed = f"{info['rate']:.2f} it/s · " if run.status == "running" and info["rate"] else ""
    eta = f"about {left / 60:.1f} min left · " if run.status == "running" and left else ""
    st.caption(f"{speed}{eta}{len(info['points'])} points")
    if run.error:
        st.error(run.error)
    b1, b2 = st.columns(2)
    try:
        if run.active and b1.button("Stop", key=f"stop{run_id}", disabled=not may_train):
            jobs.request_stop(store, run_id)
        if run.status in ("stopped", "failed", "interrupted") and b2.button("Resume", key=f"resume{run_id}",
                                                                             disabled=not may_train):
            jobs.prepare_resume(store, run_id, background=True)
            jobs.start_worker(store, run_id)
    except (ValueError, PermissionDenied) as exc:
        st.error(str(exc))
    ui.loss_charts(info, run_id)
    if run.status == "done" and run.metrics.get("after"):
        ui.training_scores(run.metrics)


live(chosen)
