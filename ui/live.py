"""The Track page's "Live stream" choice: start a live run on a camera stream, follow it (preview,
rolling numbers, counts, drops and reconnects, segments) and stop it. The run is a ``live`` job in
its own process (:mod:`cowdetect.jobs.live`); this page only reads its row and files."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cowdetect import jobs
from cowdetect.accounts import PermissionDenied
from cowdetect.live import display_source
from cowdetect.store import RunRecord, Store
from cowdetect.stream_hosts import HOW_TO_ALLOW

from .runs import launch, may_run, run_picker, stop_run
from .widgets import model_picker, show_flash


def _geometry(lines_text: str, zones_text: str) -> dict[str, Any] | None:
    """Counting lines and zones typed one a line ('NAME=x1,y1,x2,y2'; zones 'NAME=x,y,x,y,x,y,...'), or None."""
    from cowdetect.counting import geometry_to_dict, named, parse_line, parse_zone

    lines = [parse_line(t) for t in lines_text.splitlines() if t.strip()]
    zones = [parse_zone(t) for t in zones_text.splitlines() if t.strip()]
    return geometry_to_dict(*named(lines, zones)) if lines or zones else None


def _start_form(store: Store) -> None:
    """The source, model and settings of a new live run; Start queues it and starts its worker."""
    with st.form("live"):
        source = st.text_input("Stream URL or camera", key="live_source",
                               placeholder="rtsp://user:password@camera/stream · http://host/stream.ts · /dev/video0",
                               help=HOW_TO_ALLOW)
        m1, m2 = st.columns([3, 1])
        model = model_picker(store, key="live_model", where=m1)
        every = m2.number_input("Detect every k-th frame", 1, 30, 3, key="live_every")
        c1, c2 = st.columns(2)
        segment = c1.number_input("Segment length (seconds)", 1.0, 3600.0, 10.0, 1.0, key="live_segment",
                                  help="the annotated video is written in complete MP4 files of this length")
        minutes = c2.number_input("Stop after (minutes; 0 = until stopped)", 0.0, 10_000.0, 0.0, 1.0,
                                  key="live_minutes")
        with st.expander("Counting lines and zones (pixels of the stream's frames)"):
            lines_text = st.text_area("Lines, one a line: NAME=x1,y1,x2,y2", key="live_lines")
            zones_text = st.text_area("Zones, one a line: NAME=x1,y1,x2,y2,x3,y3,...", key="live_zones")
        go = st.form_submit_button("Start", type="primary", disabled=not may_run(store, "live"),
                                   help="a background run until you press Stop (needs the trainer role)")
    if go:
        try:
            settings = jobs.live_settings(store, source, model=model, detect_every=int(every),
                                          segment_seconds=float(segment), duration=minutes * 60 or None,
                                          geometry=_geometry(lines_text, zones_text))
            st.session_state["live_run"] = launch(store, jobs.create_live_run, settings)
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))


def _numbers(run: RunRecord) -> None:
    """The rolling numbers, the counts and the connection's events of a live run."""
    live = run.metrics.get("live", {})
    cols = st.columns(5)
    cols[0].metric("Frames", live.get("frames", 0), help=f"state: {live.get('state', 'starting')}")
    cols[1].metric("Speed", f"{live.get('fps', 0):.1f} fps")
    cols[2].metric("Dropped", live.get("dropped", 0), help="frames skipped because tracking fell behind the stream")
    median, p95 = live.get("latency_ms_median"), live.get("latency_ms_p95")
    cols[3].metric("Latency", "–" if median is None else f"{median:.0f} ms",
                   help=None if p95 is None else f"frame in → annotated frame out; 95th percentile {p95:.0f} ms")
    cols[4].metric("Reconnects", live.get("reconnects", 0), help=f"{live.get('drops', 0)} drops")
    counts = run.metrics.get("counts", {})
    if counts.get("lines") or counts.get("zones"):
        rows = [{"line or zone": c["name"], "forward": c["forward"], "backward": c["backward"]}
                for c in counts.get("lines", [])]
        rows += [{"line or zone": z["name"], "inside now": z["inside"], "most inside": z["max_inside"],
                  "cows seen inside": z.get("visits", len(z.get("dwell", [])))}  # rolling: visits; final: dwell
                 for z in counts.get("zones", [])]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    events = live.get("events", [])
    if events:
        st.dataframe(pd.DataFrame(events[::-1])[["at", "kind", "message"]], hide_index=True, height=150)


@st.fragment
def _segments(store: Store, run_id: int) -> None:
    """The run's complete segments: the chosen one (newest first) playable, and its download.

    Its own fragment, outside the once-a-second one: the player is not redrawn (playback would
    restart) while the run goes on; the list grows on Refresh. The file is read only when the
    download is clicked."""
    segments = jobs.live_segments(store, run_id)
    st.button("Refresh segments", key=f"live_segment_refresh{run_id}")
    if not segments:
        st.caption("No complete segment yet.")
        return
    names = [p.name for p in segments][::-1]
    chosen = st.selectbox(f"Segments ({len(names)}, newest first)", names, key=f"live_segment_pick{run_id}")
    path = segments[[p.name for p in segments].index(chosen)]
    st.video(str(path))
    st.download_button("Download segment", path.read_bytes, f"run{run_id}-{path.name}", "video/mp4",
                       key=f"live_download{run_id}")


@st.fragment(run_every=1)
def _follow(store: Store, run_id: int) -> None:
    """A running live run, redrawn every second: preview, numbers, events, segments, Stop."""
    jobs.mark_interrupted(store)
    run = store.run(run_id)
    if not run.active:
        st.rerun(scope="app")  # ended: the page draws it once, outside this fragment
    st.caption(f"run {run.id} · {display_source(run.params['source'])} · {run.status} · "
               f"{run.metrics.get('live', {}).get('state', 'starting')}")
    st.button("Stop", key=f"live-stop-{run_id}", on_click=stop_run, args=(store, run_id, "live_stop_flash"),
              disabled=not may_run(store, run.kind))
    show_flash("live_stop_flash")
    preview = jobs.live_outputs(store, run_id)["preview"]
    if preview.is_file():
        st.image(str(preview), caption="latest annotated frame", width=640)
    _numbers(run)
    st.caption(f"{run.metrics.get('segments_total', 0)} complete segments")


def live_section(store: Store) -> None:
    """The whole Live stream choice of the Track page: the start form, the run picker, the chosen run."""
    _start_form(store)
    jobs.mark_interrupted(store)
    runs = store.runs("live")
    if not runs:
        st.info("No live run yet: enter a stream URL or camera and press Start.")
        return
    chosen = run_picker(runs, "live_run", lambda r: f"run {r.id} · {display_source(r.params['source'])} · {r.status}")
    run = store.run(chosen)
    if run.active:
        _follow(store, chosen)
    else:
        if run.error:
            (st.warning if run.status in ("done", "stopped") else st.error)(run.error)
        _numbers(run)
    _segments(store, chosen)
