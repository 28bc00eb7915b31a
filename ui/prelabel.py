"""Pre-label a whole split from a page: pick the images, the model, the threshold and the tiles,
start the job in a worker process (:mod:`cowdetect.jobs.prelabel`), follow it, stop or resume it."""

from __future__ import annotations

import streamlit as st

from cowdetect import jobs
from cowdetect.store import SPLITS, RunRecord, Store

from .runs import follow_run, may_run, resume_run, start_run
from .widgets import model_picker, show_flash, tiles_picker

ALL = "all unlabeled images"


def _last(store: Store, run: RunRecord) -> None:
    """What the newest finished (or stopped) pre-label run did, with Resume when it can go on."""
    counts = f"{run.metrics.get('boxes', 0)} boxes on {run.metrics.get('images', 0)} images"
    if run.status == "done":
        st.success(f"Run {run.id} ({run.params['model_label']}): {counts}. Review them on the Label page.")
        return
    st.warning(f"Run {run.id} ({run.params['model_label']}) {run.status}: {counts} so far. {run.error or ''}")
    st.button(f"Resume run {run.id}", key=f"prelabel-resume-{run.id}", on_click=resume_run,
              args=(store, run.id, "prelabel_flash"), disabled=not may_run(store, run.kind))


def prelabel_panel(store: Store, key: str = "prelabel") -> None:
    """The Data page's "Pre-label" section: images per state (labeled / suggested / unlabeled),
    the settings, Start (a background job), its progress and Stop, the last run's result."""
    states = store.count_states()
    for col, state in zip(st.columns(3), ("labeled", "suggested", "unlabeled")):
        col.metric(state.capitalize(), states[state])
    c1, c2, c3, c4 = st.columns(4)
    target = c1.selectbox("Images", [ALL, *SPLITS], key=f"{key}_split",
                          help="the not-yet-labeled images of a split; labeled images are never touched")
    model = model_picker(store, key=f"{key}_model", where=c2)
    threshold = c3.slider("Score threshold", 0.05, 0.95, 0.5, 0.05, key=f"{key}_threshold")
    tiles = tiles_picker(f"{key}_tiles", c4)
    jobs.mark_interrupted(store)
    runs = store.runs("prelabel")
    running = next((r for r in runs if r.active), None)
    if running is not None:
        follow_run(store, running.id, "image", label=f"{running.params['model_label']}: ", key="prelabel")
        return
    if st.button("Pre-label", type="primary", key=f"{key}_start", disabled=not may_run(store, "prelabel")):
        start_run(store, lambda: jobs.prelabel_settings(store, model, None if target == ALL else target,
                                                        target == ALL, threshold, tiles=tiles),
                  jobs.create_prelabel_run)
    show_flash("prelabel_flash")
    if runs:
        _last(store, runs[0])
