"""The Data page's "Frames from a video" section: a video (uploaded or stored) → unlabeled images,
imported by a background job (:mod:`cowdetect.jobs.frames`) followed here, with Stop and Resume."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cowdetect import jobs
from cowdetect.accounts import PermissionDenied
from cowdetect.frames import MIN_CHANGE_BITS, FrameImport, check_settings
from cowdetect.store import SPLITS, RunRecord, Store
from cowdetect.video import VIDEO_SUFFIXES

from .runs import follow_run, launch, may_run, resume_run
from .widgets import show_flash

HOW = {"every": "One frame every … seconds", "count": "This many frames, spread evenly"}


def _video_id(store: Store, upload: Any, stored: int | None) -> int:
    """The uploaded video, stored first (once), else the stored one picked. ValueError when neither."""
    if upload is not None:
        record, _ = jobs.add_video(store, upload.getvalue(), upload.name)
        return record.id
    if stored is None:
        raise ValueError("choose a video first: upload one, or pick a stored one")
    return stored


def frame_import_report(result: FrameImport) -> None:
    """'Added N frames, skipped M' (success, or a warning when nothing was added) and the skips and why."""
    text = f"Added {result.added} frame{'s' * (result.added != 1)}, skipped {len(result.skipped)}."
    (st.success if result.added else st.warning)(" ".join(t for t in (text, result.note) if t))
    if result.warning:
        st.warning(result.warning)
    if result.skipped:
        with st.expander(f"Skipped frames ({len(result.skipped)})"):
            st.dataframe(pd.DataFrame(result.skipped, columns=["frame", "reason"]), hide_index=True,
                         width="stretch")


def _last(store: Store, run: RunRecord) -> None:
    """What the newest import of this section did (so far), with Resume when it did not finish."""
    if run.status == "failed":
        st.error(f"Run {run.id} ({run.params['video_name']}) failed: {run.error}")
    else:
        frame_import_report(jobs.frame_import_of(run))
    if run.status != "done":
        if run.status != "failed":
            st.warning(f"Run {run.id} ({run.params['video_name']}) {run.status}. {run.error or ''}")
        st.button(f"Resume run {run.id}", key=f"frames-resume-{run.id}", on_click=resume_run,
                  args=(store, run.id, "frames_flash"), disabled=not may_run(store, run.kind))


def _start(store: Store, upload: Any, stored: int | None, every: float | None, count: int | None, split: str,
           min_change: int) -> None:
    """Check the settings, store an upload, start the import job and rerun to follow it; a
    ValueError or a refusal (the role) is shown in one line (nothing started, an upload not stored
    when the settings are wrong)."""
    try:
        check_settings(every, count, split, min_change)  # before an upload is stored
        settings = jobs.frames_settings(store, _video_id(store, upload, stored), every=every, count=count,
                                        split=split, min_change=min_change)
        launch(store, jobs.create_frames_run, settings)
    except (ValueError, PermissionDenied) as exc:
        st.error(str(exc))
        return
    st.rerun()


def frames_from_video(store: Store) -> None:
    """Upload a video or pick a stored one; take a frame every N seconds or N frames; import in a
    background job (progress and Stop while it runs), then its report."""
    jobs.mark_interrupted(store)
    runs = [r for r in store.runs("frames") if r.params["frames"] is None]  # sampled here, not chosen on Track
    running = next((r for r in runs if r.active), None)
    if running is not None:
        follow_run(store, running.id, "frame", label=f"{running.params['video_name']}: ", key="frames")
        return
    videos = {v.id: v for v in reversed(store.videos())}
    with st.form("video_frames"):
        upload = st.file_uploader("A video", type=[s.lstrip(".") for s in VIDEO_SUFFIXES], key="frames_upload")
        stored = st.selectbox("…or a stored video", list(videos), index=0 if videos else None, key="frames_video",
                              format_func=lambda i: f"{videos[i].original_name} · {videos[i].frames} frames "
                                                    f"(video {i})", placeholder="no video stored yet")
        c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
        how = c1.radio("Take", list(HOW), format_func=HOW.get, key="frames_how")
        amount = c2.number_input("Seconds or frames", 0.01, 100_000.0, 1.0, key="frames_amount")
        split = c3.selectbox("Split", SPLITS, index=SPLITS.index("unassigned"), key="frames_split")
        min_change = c4.number_input("Min change (hash bits)", 0, 64, MIN_CHANGE_BITS, key="frames_min_change",
                                     help="Skip a frame that differs from the last one kept in fewer of the 64 "
                                          "bits of their perceptual hashes (0 keeps all).")
        submitted = st.form_submit_button("Import frames", type="primary", disabled=not may_run(store, "frames"))
    if submitted:
        every, count = (float(amount), None) if how == "every" else (None, int(round(amount)))
        _start(store, upload, stored, every, count, split, int(min_change))
        return
    show_flash("frames_flash")
    if runs:
        _last(store, runs[0])
