"""Track: follow each cow through a video (Norfair), play the annotated result, compare two models."""

import streamlit as st

import ui
from cowdetect import jobs
from cowdetect.accounts import PermissionDenied
from cowdetect.config import TrackConfig
from cowdetect.tracking import DISTANCES
from cowdetect.video import VIDEO_SUFFIXES

st.title("Track")
store = ui.store()
source = st.radio("Source", ["Stored video", "Live stream", "Several videos (Ray)"], horizontal=True,
                  key="track_source")
if source == "Live stream":
    ui.live_section(store)
    st.stop()
if source == "Several videos (Ray)":
    ui.track_many_section(store)
    st.stop()
defaults = TrackConfig()
may_import, may_track = store.user.may("import"), store.user.may("track")

with st.expander("Upload a video", expanded=may_import and not store.videos()):
    upload = st.file_uploader("Video of cows", type=[s.lstrip(".") for s in VIDEO_SUFFIXES], key="video_upload",
                              disabled=not may_import)
    truth = st.file_uploader("Ground truth, MOTChallenge text (optional: adds MOTA and IDF1)", type=["txt"],
                             key="gt_upload", disabled=not may_import)
    if upload is not None and st.session_state.get("added_upload") != (upload.file_id, truth and truth.file_id):
        try:
            video, note = jobs.add_video(store, upload.getvalue(), upload.name,
                                         truth.getvalue().decode("utf-8") if truth is not None else None)
        except (ValueError, UnicodeDecodeError, PermissionDenied) as exc:
            st.error(f"Not added: {exc}")
        else:
            st.session_state["added_upload"] = (upload.file_id, truth and truth.file_id)
            st.session_state["video_id"] = video.id
            st.success(note)

videos = {v.id: v for v in reversed(store.videos())}
if not videos:
    st.info("No video yet: upload one above, or generate the demo data on the Home page.")
    st.stop()
ids = list(videos)
video_id = st.selectbox("Video", ids, index=ids.index(st.session_state["video_id"])
                        if st.session_state.get("video_id") in ids else 0,
                        format_func=lambda i: f"{videos[i].original_name} · {videos[i].width}×{videos[i].height} · "
                        f"{videos[i].frames} frames" + (" · ground truth" if videos[i].gt_path else ""))
with st.expander("Counting lines and zones", expanded=bool(videos[video_id].geometry)):
    ui.geometry_editor(store, videos[video_id])  # kept with the video: every run below counts on them
with st.form("track"):
    m1, m2 = st.columns([3, 1])
    model = ui.model_picker(store, key="track_model", where=m1)
    tiles = ui.tiles_picker("track_tiles", m2)
    c1, c2, c3 = st.columns(3)
    score = c1.slider("Score threshold", 0.05, 0.95, defaults.score_threshold, 0.05, key="score")
    distance = c2.radio("Distance", list(DISTANCES), horizontal=True, key="distance",
                        help="; ".join(f"{k}: {v[2]}" for k, v in DISTANCES.items()))
    threshold = c3.number_input("Distance threshold (0 = the distance's default)", 0.0, 10.0, 0.0, 0.05,
                                key="threshold")
    c4, c5, c6 = st.columns(3)
    hit_max = c4.number_input("Frames a lost cow is kept (hit_counter_max)", 1, 1000, defaults.hit_counter_max,
                              key="hit_max")
    delay = c5.number_input("Frames before a new id (initialization_delay)", 0, 999, defaults.initialization_delay,
                            key="delay")
    every = c6.number_input("Detect every k-th frame", 1, 30, defaults.detect_every, key="every",
                            help="Norfair's Kalman filter predicts the frames in between")
    c7, c8, c9 = st.columns(3)
    low = c7.number_input("Low score threshold (0 = off)", 0.0, 1.0, defaults.low_score_threshold or 0.0, 0.05,
                          key="low_score", help="detections from this score up to the score threshold only extend "
                                                "tracks left unmatched (ByteTrack's second association)")
    reid = c8.number_input("ReID appearance threshold (0 = off)", 0.0, 1.0, defaults.reid_distance_threshold or 0.0,
                           0.05, key="reid", help="a new track that looks like (colour histogram distance 0-1) a "
                                                  "cow lost nearby takes its id")
    reid_max = c9.number_input("Frames a lost cow can be re-identified", 1, 10000, defaults.reid_hit_counter_max,
                               key="reid_max")
    go = st.form_submit_button("Track", type="primary", disabled=not may_track,
                               help="a background run (needs the trainer role)")

if go:
    try:
        settings = jobs.tracking_settings(store, video_id, model=model, score_threshold=score, distance=distance,
                                          distance_threshold=threshold or None, hit_counter_max=int(hit_max),
                                          initialization_delay=int(delay), detect_every=int(every), tiles=tiles,
                                          low_score_threshold=low or None, reid_distance_threshold=reid or None,
                                          reid_hit_counter_max=int(reid_max))
        st.session_state["track_run"] = ui.launch(store, jobs.create_tracking_run, settings)
    except (ValueError, PermissionDenied) as exc:
        st.error(str(exc))
        st.stop()

jobs.mark_interrupted(store)
runs = [r for r in store.runs("track") if r.params["video_id"] == video_id]
if not runs:
    st.info("No tracking run on this video yet: press Track.")
    st.stop()
chosen = ui.run_picker(runs, "track_run", lambda r: f"run {r.id} · {r.params['model_label']} · {r.status}")


@st.fragment(run_every=1)
def live(run_id: int) -> None:
    jobs.mark_interrupted(store)
    run = store.run(run_id)
    if not run.active:
        st.rerun(scope="app")  # finished: the results render outside this fragment, once
    ui.progress_bar(run, "frame")
    preview = jobs.track_outputs(store, run_id)["preview"]
    if preview.is_file():
        st.image(str(preview), caption="latest annotated frame", width=640)
    if st.button("Stop", key=f"stop{run_id}", disabled=not may_track):
        try:
            jobs.request_stop(store, run_id)
        except (ValueError, PermissionDenied) as exc:
            st.error(str(exc))


current = store.run(chosen)
if current.active:
    live(chosen)
else:
    ui.track_results(store, current)
    ui.counting_results(store, current)
    if current.status == "done":
        ui.to_label_section(store, current)

done = [r for r in runs if r.status == "done"]
if len(done) >= 2:
    st.subheader("Compare two models on this video")
    ui.compare_tracks(store, done)
