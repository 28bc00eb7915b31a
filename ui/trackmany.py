"""The Track page's "Several videos (Ray)": stored videos tracked on a Ray cluster, one task each
(:mod:`cowdetect.jobs.trackmany`); progress, Stop and each video's result as for other runs."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from cowdetect import jobs
from cowdetect.cluster import ADDRESS_ENV, INSTALL_HINT, ray_installed
from cowdetect.store import RunRecord, Store

from .runs import follow_run, may_run, resume_run, run_picker, start_run
from .widgets import model_picker, show_flash


def track_many_section(store: Store) -> None:
    """Pick videos and a cluster, start; then follow the chosen track-many run."""
    if not ray_installed():
        st.info(INSTALL_HINT)
        return
    videos = {v.id: v for v in reversed(store.videos())}
    with st.form("track_many"):
        chosen = st.multiselect("Videos", list(videos), key="many_videos",
                                format_func=lambda i: f"{videos[i].original_name} · {videos[i].frames} frames")
        model = model_picker(store, key="many_model")
        c1, c2 = st.columns([3, 1])
        address = c1.text_input("Ray cluster", os.environ.get(ADDRESS_ENV, ""), key="many_ray",
                                help="HOST:PORT of a running cluster's head that this server has joined, or empty for "
                                     f"a Ray on this server. Other than {ADDRESS_ENV}'s, only an admin may send work "
                                     "elsewhere.")
        cores = os.cpu_count() or 1
        workers = c2.number_input("Tasks at once (this server)", 1, cores, min(2, cores), key="many_workers")
        go = st.form_submit_button("Track on Ray", type="primary", disabled=not may_run(store, "track-many"))
    if go:
        start_run(store, lambda: jobs.track_many_settings(store, list(chosen), model=model, ray=address or None,
                                                         workers=int(workers)), jobs.create_track_many_run)
    runs = store.runs("track-many")
    if not runs:
        return
    run = store.run(run_picker(runs, "many_run", lambda r: f"run {r.id} · {len(r.params['videos'])} videos · "
                                                            f"{r.params['model_label']} · {r.status}"))
    if run.active:
        follow_run(store, run.id, "frame", key="many")
    else:
        _ended(store, run)


def _ended(store: Store, run: RunRecord) -> None:
    """Each video's run of an ended track-many run (results on the page's stored-video view), and Resume."""
    st.write(f"**{run.status}**" + (f": {run.error}" if run.error else ""))
    rows = []
    for child in jobs.track_many_children(store, run.id):
        summary = child.metrics.get("summary", {})
        rows.append({"run": child.id, "video": store.video(child.params["video_id"]).original_name,
                     "status": child.status, "cows": summary.get("num_tracks"), "frames": summary.get("frames"),
                     "fps": summary.get("fps"), "error": child.error})
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption("Each video's tracks, annotated video and counts: Source → Stored video, pick the video and its run.")
    if run.status != "done":
        st.button("Resume", key=f"many-resume-{run.id}", on_click=resume_run, args=(store, run.id, "many_flash"),
                  disabled=not may_run(store, run.kind))
        show_flash("many_flash")
