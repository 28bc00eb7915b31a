"""Runs on the pages: start one (a worker process, never this one), pick one, show its progress
and results. Pages only read run rows and write commands."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd
import streamlit as st

from cowdetect import jobs
from cowdetect.accounts import PermissionDenied, run_action
from cowdetect.mot import counts_per_frame, read_mot, track_table
from cowdetect.store import RunRecord, Store

from .tables import track_comparison
from .widgets import flash, show_flash


def launch(store: Store, create: Callable[[Store, dict[str, Any]], int], settings: dict[str, Any]) -> int:
    """Queue a run (``create``: a ``jobs.create_*_run``) and start its worker process; a second
    click on the same settings finds the same run and its live worker. Returns the run id."""
    run_id = create(store, settings)
    jobs.start_worker(store, run_id)  # None when a live worker already has it
    return run_id


def may_run(store: Store, kind: str) -> bool:
    """Whether the store's user may start, stop or resume runs of ``kind`` (the library checks anyway)."""
    return store.user.may(run_action(kind))


def start_run(store: Store, settings_of: Callable[[], dict[str, Any]],
              create: Callable[[Store, dict[str, Any]], int]) -> None:
    """A start button's action: check the settings (``settings_of`` raises ValueError: shown as one
    line, nothing queued), queue the run and start its worker (:func:`launch`), draw the page anew.
    A user whose role may not start it gets one line too (PermissionDenied)."""
    try:
        launch(store, create, settings_of())
    except (ValueError, PermissionDenied) as exc:
        st.error(str(exc))
        return
    st.rerun()


def run_picker(runs: Sequence[RunRecord], remember: str, describe: Callable[[RunRecord], str]) -> int:
    """A selectbox of ``runs`` (newest first) starting at the id kept in session state under
    ``remember`` (the run this session started last); returns the chosen id."""
    by_id = {r.id: r for r in runs}
    ids = list(by_id)
    wanted = st.session_state.get(remember)
    return st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0,
                        format_func=lambda i: describe(by_id[i]))


def progress_bar(run: RunRecord, unit: str, label: str = "", extra: str = "") -> None:
    """``label status · unit i / n extra`` over a bar."""
    st.progress(min(1.0, run.iteration / max(1, run.total)),
                text=f"{label}{run.status} · {unit} {run.iteration} / {run.total}{extra}")


@st.fragment(run_every=1)
def follow_run(store: Store, run_id: int, unit: str, label: str = "", key: str = "run") -> None:
    """A queued or running job's progress and a Stop button (key ``{key}-stop-{run_id}``), redrawn
    every second; the whole page reruns when it ends, so what shows its result is fresh."""
    jobs.mark_interrupted(store)
    run = store.run(run_id)
    if not run.active:
        st.rerun(scope="app")
    progress_bar(run, unit, label=label)
    st.button("Stop", key=f"{key}-stop-{run_id}", on_click=stop_run, args=(store, run_id, f"{key}_stop_flash"),
              disabled=not may_run(store, run.kind))
    show_flash(f"{key}_stop_flash")


def stop_run(store: Store, run_id: int, flash_key: str) -> None:
    """Button callback: ask a run to stop; a refusal (the role) is flashed under ``flash_key``, not raised."""
    try:
        jobs.request_stop(store, run_id)
    except (ValueError, PermissionDenied) as exc:
        flash(flash_key, "error", str(exc))


def resume_run(store: Store, run_id: int, flash_key: str) -> None:
    """Button callback: queue a stopped, failed or interrupted run again and start its worker; why
    not (e.g. a click delivered twice finds it queued, or the user's role) is flashed under
    ``flash_key``, not raised."""
    try:
        jobs.prepare_resume(store, run_id, background=True)
        jobs.start_worker(store, run_id)
    except (ValueError, PermissionDenied) as exc:
        flash(flash_key, "warning", str(exc))


def loss_charts(info: dict[str, Any], run_id: int) -> None:
    """Training loss (smoothed or raw) and validation mAP over iterations (``info``: jobs.progress)."""
    if info["points"]:
        frame = pd.DataFrame(info["points"]).set_index("iteration")
        losses = [c for c in frame.columns if c.startswith("loss")]
        smooth = st.toggle("Smoothed", True, key=f"smooth{run_id}")
        st.line_chart(frame[losses].ewm(alpha=0.1).mean() if smooth else frame[losses], x_label="iteration",
                      y_label="loss")
    if info["val_points"]:
        val = pd.DataFrame(info["val_points"]).set_index("iteration")
        st.line_chart(val[["val_map_50", "val_map"]], x_label="iteration", y_label="validation mAP")


def training_scores(metrics: dict[str, Any]) -> None:
    """A finished training run's test mAPs, with the change from before training, and the cow."""
    before, after = metrics.get("before", {}), metrics["after"]
    for col, key, label in zip(st.columns(3), ("map_50", "map", "map_75"), ("mAP50", "mAP", "mAP75")):
        change = f"{after[key] - before[key]:+.3f}" if key in before else None
        col.metric(f"{label} on test", f"{after[key]:.3f}", change)
    st.code(jobs.cowsay_text(metrics), language=None)


def track_results(store: Store, run: RunRecord) -> None:
    """A finished tracking run: its error, the annotated video, counts, MOT scores, downloads."""
    files, summary = jobs.track_outputs(store, run.id), run.metrics.get("summary", {})
    if run.error:
        (st.warning if run.status in ("done", "stopped") else st.error)(run.error)
    if not files["video"].is_file():
        return
    left, right = st.columns([3, 2])
    left.video(str(files["video"]))
    tracks = read_mot(files["mot"])
    table = track_table(tracks, store.video(run.params["video_id"]).fps or 25.0)
    m1, m2, m3 = right.columns(3)
    m1.metric("Unique cows", len(table))
    m2.metric("Most at once", summary.get("max_cows_in_frame", 0))
    reused = summary.get("reused_frames", 0)
    m3.metric("Speed", f"{summary.get('fps', 0):.0f} fps",
              help=f"{reused} of {summary.get('detected_frames', 0)} detected frames were kept from an earlier run "
                   "of this model on this video, not detected again" if reused else None)
    if "mot" in run.metrics:
        mot = run.metrics["mot"]
        g1, g2, g3 = right.columns(3)
        g1.metric("MOTA", f"{mot['mota']:.3f}")
        g2.metric("IDF1", f"{mot['idf1']:.3f}")
        g3.metric("ID switches", mot["id_switches"])
    right.dataframe(table, hide_index=True, height=220)
    d1, d2 = right.columns(2)
    d1.download_button("Tracks CSV", files["csv"].read_bytes(), f"tracks-run{run.id}.csv", "text/csv")
    d2.download_button("MOTChallenge", files["mot"].read_bytes(), f"tracks-run{run.id}.txt", "text/plain")
    st.area_chart(counts_per_frame(tracks, summary.get("frames", 0)).set_index("frame"), x_label="frame",
                  y_label="cows tracked", height=180)


def to_label_section(store: Store, run: RunRecord) -> None:
    """The frames where a finished tracking run broke, each with its thumbnail (the tracker's
    boxes drawn) and why; the chosen ones go into the dataset with the tracker's boxes as
    suggestions (they open on the Label page ready to correct), by a frame-import job followed here."""
    found = jobs.frames_to_label_of(store, run.id)
    st.subheader(f"Frames worth labeling ({len(found)})")
    if not found:
        st.caption("Tracking did not break anywhere this run can tell: no ID switch, no cow kept alive without a "
                   "detection, no short track, no track born or lost in mid-picture.")
        return
    st.caption("Where tracking broke: labeling these frames teaches the detector what it got wrong there.")
    chosen = []
    for start in range(0, len(found), 4):
        for col, item in zip(st.columns(4), found[start:start + 4]):
            if item["thumbnail"] is not None:
                col.image(str(item["thumbnail"]))
            keep = col.checkbox(f"frame {item['frame']} · {item['time']:.1f} s", value=True,
                                key=f"tolabel-{run.id}-{item['frame']}", help=item["reason"])
            col.caption(item["reason"])
            if keep:
                chosen.append(item["frame"])
    jobs.mark_interrupted(store)
    imports = [r for r in store.runs("frames") if r.params["from_run"] == run.id]
    if imports and imports[0].active:
        follow_run(store, imports[0].id, "frame", label="Adding frames: ", key="tolabel")
        return
    if st.button(f"Add {len(chosen)} frames to the dataset", type="primary",
                 disabled=not chosen or not may_run(store, "frames"), key=f"tolabel-add-{run.id}"):
        start_run(store, lambda: jobs.frames_settings(store, run.params["video_id"], from_run=run.id, frames=chosen),
                  jobs.create_frames_run)
    show_flash("tolabel_flash")
    if imports:
        _frames_added(store, imports[0])


def _frames_added(store: Store, run: RunRecord) -> None:
    """What the newest "Add frames" import of a tracking run did (so far), with Resume when it did not finish."""
    report = jobs.frame_import_of(run)
    other = [s["reason"] for s in report.skipped if "already" not in s["reason"]]
    already = len(report.skipped) - len(other)
    note = (f"Added {report.added} frame{'' if report.added == 1 else 's'} with the tracker's boxes as "
            f"suggestions" + (f"; {already} already in the dataset" if already else "")
            + (f"; {len(other)} skipped ({other[0]})" if other else "") + ". Review them on the Label page.")
    if run.status == "done":
        (st.success if report.added else st.info)(note)
        return
    st.warning(f"Adding frames (run {run.id}) {run.status}: {run.error or ''} {note if report.added else ''}")
    st.button(f"Resume run {run.id}", key=f"tolabel-resume-{run.id}", on_click=resume_run,
              args=(store, run.id, "tolabel_flash"), disabled=not may_run(store, run.kind))


def compare_tracks(store: Store, done: Sequence[RunRecord]) -> None:
    """Two finished tracking runs of one video side by side: scores, MOTA / IDF1 bars, both videos."""
    labels = {r.id: f"run {r.id} · {r.params['model_label']}" for r in done}
    pair = st.multiselect("Runs", list(labels), default=list(labels)[:2], max_selections=2, format_func=labels.get)
    if len(pair) != 2:
        return
    table = track_comparison([next(r for r in done if r.id == run_id) for run_id in pair])
    st.dataframe(table)
    if table["mota"].notna().all():
        st.bar_chart(table[["mota", "idf1"]].T, stack=False, height=220)
    else:
        st.caption("MOTA and IDF1 need ground truth: upload it with the video (MOTChallenge text).")
    for col, run_id in zip(st.columns(2), pair):
        col.caption(labels[run_id])
        col.video(str(jobs.track_outputs(store, run_id)["video"]))
