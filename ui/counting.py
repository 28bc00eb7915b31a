"""The Track page's counting lines and zones: draw them on a frame of the video (streamlit-drawable-canvas,
"line" and "polygon" modes), keep them with the video, list and delete them; and a finished run's
counts: numbers per line and zone, a timeline, the events CSV.

Coordinates: the canvas shows the frame scaled by ``scale`` (canvas px per frame px); shapes are
kept in full-frame pixels (:mod:`cowdetect.geometry`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from cowdetect import jobs
from cowdetect.accounts import PermissionDenied
from cowdetect.counting import Counter
from cowdetect.geometry import Line, geometry_from_dict
from cowdetect.store import RunRecord, Store, VideoRecord
from cowdetect.video import VideoReader

from .canvas import canvas_size
from .widgets import flash, show_flash

DRAW_COLOR = "#ff40a0"
MAX_CHART_POINTS = 2000  # a long video's per-frame series is thinned to this many points


@st.cache_data(max_entries=16, show_spinner=False)
def first_frame(path: str) -> np.ndarray:
    """The first frame of the video at ``path`` (RGB uint8, full size); videos are stored by content hash."""
    reader = VideoReader(path)
    try:
        return next(iter(reader)).rgb
    finally:
        reader.close()


def canvas_shape(obj: dict[str, Any], scale: float) -> tuple[str, list[tuple[float, float]]] | None:
    """("line", [start, end]) or ("zone", corners) in full-frame px from one canvas object (its
    "line" tool draws a fabric Line centred on left/top with ends x1,y1 → x2,y2 relative to that centre;
    its "polygon" tool a Polygon with absolute canvas points); None for anything else."""
    if obj.get("type", "").lower() == "line":
        sx, sy = float(obj.get("scaleX", 1)), float(obj.get("scaleY", 1))
        cx, cy = float(obj["left"]), float(obj["top"])
        if obj.get("originX") == "left":
            cx += float(obj.get("width", 0)) * sx / 2
        if obj.get("originY") == "top":
            cy += float(obj.get("height", 0)) * sy / 2
        ends = [(cx + float(obj["x1"]) * sx, cy + float(obj["y1"]) * sy),
                (cx + float(obj["x2"]) * sx, cy + float(obj["y2"]) * sy)]
        return "line", [(round(x / scale, 1), round(y / scale, 1)) for x, y in ends]
    if obj.get("type", "").lower() == "polygon":
        return "zone", [(round(float(p["x"]) / scale, 1), round(float(p["y"]) / scale, 1)) for p in obj["points"]]
    return None


def _add(store: Store, video: VideoRecord, shape: tuple[str, list[tuple[float, float]]]) -> None:
    """Add the drawn shape to the video's lines and zones (a button's callback: the result is flashed).
    The store adds it to the geometry as stored now (under its write lock), not to the copy this page
    was drawn with: another tab's shape added meanwhile is kept. The name is read here, not bound when
    the button was drawn: typed just before the click, it is newer than that run."""
    kind, points = shape
    name = st.session_state.get("counting_name", "").strip()
    # clip to the frame: a drag that ends a little past the canvas edge is meant to end at the edge
    points = [(min(max(x, 0.0), float(video.width)), min(max(y, 0.0), float(video.height))) for x, y in points]
    try:
        record = store.add_video_shape(video.id, kind, points, name)
    except (ValueError, PermissionDenied) as exc:
        flash("counting_flash", "error", f"Not added: {exc}")
        return
    lines, zones = geometry_from_dict(record.geometry)
    added = (lines if kind == "line" else zones)[-1].name  # the store appends it
    st.session_state["counting_canvas"] = st.session_state.get("counting_canvas", 0) + 1  # a fresh canvas
    st.session_state["counting_name"] = ""
    flash("counting_flash", "success", f"Added {kind} {added}: every tracking run of this video counts on it.")


def _remove(store: Store, video: VideoRecord, name: str) -> None:
    try:
        store.remove_video_shape(video.id, name)
    except (ValueError, PermissionDenied) as exc:
        flash("counting_flash", "error", str(exc))
        return
    flash("counting_flash", "success", f"Removed {name}.")


def geometry_editor(store: Store, video: VideoRecord) -> None:
    """Draw counting lines and zones on the video's first frame, kept with the video; list and delete them."""
    from streamlit_drawable_canvas import st_canvas  # needs a running app (STACK.md)

    may = store.user.may("track")
    show_flash("counting_flash")
    lines, zones = geometry_from_dict(video.geometry)
    frame = first_frame(str(video.path)).copy()
    Counter(lines, zones).draw(frame, 1.0)  # the saved ones, with their forward arrows
    width, height, scale = canvas_size(frame.shape[1], frame.shape[0])
    c1, c2 = st.columns([1, 2])
    mode = c1.radio("Draw", ["line", "zone"], horizontal=True, key="counting_mode",
                    help="line: drag from one end to the other; forward is the way the arrow points (from the "
                         "line's left to its right, looking from where you started). zone: click the corners, then "
                         "click the first corner again to close it.")
    c2.text_input("Name (optional)", key="counting_name", max_chars=40, placeholder=f"{mode}1")
    result = st_canvas(background_image=_resized(frame, width, height), width=width, height=height,
                       drawing_mode="line" if mode == "line" else "polygon", stroke_color=DRAW_COLOR, stroke_width=3,
                       fill_color="rgba(255, 64, 160, 0.15)", disabled=not may,
                       key=f"counting-{video.id}-{st.session_state.get('counting_canvas', 0)}")
    objects = (getattr(result, "json_data", None) or {}).get("objects", [])
    shapes = [s for s in (canvas_shape(o, scale) for o in objects) if s is not None and s[0] == mode]
    st.button(f"Add this {mode}", type="primary", key="counting_add", disabled=not shapes or not may,
              on_click=_add, args=(store, video, shapes[-1] if shapes else ("line", [])),
              help="the last one drawn; needs the trainer role")
    for shape in [*lines, *zones]:
        a, b = st.columns([5, 1])
        where = (f"({shape.x1:g}, {shape.y1:g}) → ({shape.x2:g}, {shape.y2:g})" if isinstance(shape, Line)
                 else f"{len(shape.points)} corners")
        a.write(f"**{shape.name}** · {'line' if isinstance(shape, Line) else 'zone'} · {where}")
        b.button("Delete", key=f"counting-del-{shape.name}", disabled=not may, on_click=_remove,
                 args=(store, video, shape.name))


def _resized(rgb: np.ndarray, width: int, height: int) -> Any:
    from PIL import Image

    return Image.fromarray(rgb).resize((width, height), Image.BILINEAR)


def timeline(events: pd.DataFrame, frames: int, fps: float) -> pd.DataFrame:
    """Per frame (time_s from the frame number at ``fps``): crossings so far of each line each way
    ("gate forward") and cows inside each zone ("pen inside"), from the events CSV's rows; at most
    :data:`MAX_CHART_POINTS` rows (evenly thinned)."""
    frames = max(frames, int(events["frame"].max()) if len(events) else 0)
    series: dict[str, np.ndarray] = {}
    for (kind, name, event), rows in events.groupby(["kind", "name", "event"], sort=True):
        step = np.zeros(frames + 2, np.int64)
        np.add.at(step, rows["frame"].to_numpy(np.int64), -1 if event == "exit" else 1)
        column = f"{name} {event}" if kind == "line" else f"{name} inside"
        series[column] = series.get(column, 0) + np.cumsum(step)[1:frames + 1]
    table = pd.DataFrame({"time_s": np.arange(frames) / (fps or 25.0), **series})
    return table.iloc[::max(1, -(-len(table) // MAX_CHART_POINTS))]


def counting_results(store: Store, run: RunRecord) -> None:
    """A finished run's counts: per line crossings each way, per zone the most inside and each cow's
    time inside, a timeline chart and the events CSV."""
    counts = run.metrics.get("counts", {})
    if not counts.get("lines") and not counts.get("zones"):
        return
    st.subheader("Counts")
    for line in counts["lines"]:
        a, b, c = st.columns(3)
        a.markdown(f"**{line['name']}** (line)")
        b.metric(f"{line['name']} forward", line["forward"], help="the way its arrow points")
        c.metric(f"{line['name']} backward", line["backward"])
    for zone in counts["zones"]:
        a, b, c = st.columns(3)
        a.markdown(f"**{zone['name']}** (zone)")
        b.metric(f"{zone['name']} most inside", zone["max_inside"])
        longest = max((d["seconds"] for d in zone["dwell"]), default=0.0)
        c.metric(f"{zone['name']} longest stay", f"{longest:.1f} s", help=f"{len(zone['dwell'])} cows were inside")
        if zone["dwell"]:
            with st.expander(f"Time inside {zone['name']}, per cow"):
                st.dataframe(pd.DataFrame(zone["dwell"]), hide_index=True)
    path = jobs.track_outputs(store, run.id)["counts"]
    if not path.is_file():
        return
    events = pd.read_csv(path)
    chart = timeline(events, int(run.metrics.get("summary", {}).get("frames", 0)),
                     store.video(run.params["video_id"]).fps or 25.0)
    if len(chart.columns) > 1:
        st.line_chart(chart.set_index("time_s"), x_label="time (s)", y_label="crossings so far / cows inside",
                      height=220)
    st.download_button("Counts CSV", path.read_bytes(), f"counts-run{run.id}.csv", "text/csv", key="counts_csv")
