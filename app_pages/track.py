"""Track: follow each cow through a video (Norfair), play the annotated result, compare two models."""

import pandas as pd
import streamlit as st

import ui
from cowdetect import jobs
from cowdetect.config import TrackConfig
from cowdetect.mot import counts_per_frame, read_mot, track_table
from cowdetect.tracking import DISTANCES
from cowdetect.video import VIDEO_SUFFIXES

st.title("Track")
store = ui.store()
defaults = TrackConfig()

with st.expander("Upload a video", expanded=not store.videos()):
    upload = st.file_uploader("Video of cows", type=[s.lstrip(".") for s in VIDEO_SUFFIXES], key="video_upload")
    truth = st.file_uploader("Ground truth, MOTChallenge text (optional: adds MOTA and IDF1)", type=["txt"],
                             key="gt_upload")
    if upload is not None and st.session_state.get("added_upload") != (upload.file_id, truth and truth.file_id):
        try:
            video_id = jobs.add_video(store, upload.getvalue(), upload.name,
                                      truth.getvalue().decode("utf-8") if truth is not None else None)
        except (ValueError, UnicodeDecodeError) as exc:
            st.error(f"Not added: {exc}")
        else:
            st.session_state["added_upload"] = (upload.file_id, truth and truth.file_id)
            st.session_state["video_id"] = video_id
            st.success(f"Added {upload.name}.")

videos = {v["id"]: v for v in store.videos()}
if not videos:
    st.info("No video yet: upload one above, or generate the demo data on the Home page.")
    st.stop()

ids = list(reversed(videos))
video_id = st.selectbox("Video", ids, index=ids.index(st.session_state["video_id"])
                        if st.session_state.get("video_id") in ids else 0,
                        format_func=lambda i: f"{videos[i]['original_name']} · {videos[i]['width']}×"
                                              f"{videos[i]['height']} · {videos[i]['frames']} frames"
                                              + (" · ground truth" if videos[i]["gt_path"] else ""))
with st.form("track"):
    models = ui.model_choices(store)
    model = st.selectbox("Model", list(models), format_func=models.get)
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
    go = st.form_submit_button("Track", type="primary")

if go:
    try:
        settings = jobs.tracking_settings(store, video_id, model=model, score_threshold=score, distance=distance,
                                          distance_threshold=threshold or None, hit_counter_max=int(hit_max),
                                          initialization_delay=int(delay), detect_every=int(every))
    except ValueError as exc:
        st.error(str(exc))
        st.stop()
    run_id = jobs.create_tracking_run(store, settings)
    if store.run(run_id)["pid"] is None:
        jobs.start_worker(store, run_id)
    st.session_state["track_run"] = run_id

jobs.mark_interrupted(store)
runs = [r for r in store.runs("track") if r["params"]["video_id"] == video_id]
if not runs:
    st.info("No tracking run on this video yet: press Track.")
    st.stop()
run_ids = [r["id"] for r in runs]
chosen = st.selectbox("Run", run_ids, index=run_ids.index(st.session_state["track_run"])
                      if st.session_state.get("track_run") in run_ids else 0,
                      format_func=lambda i: next(f"run {r['id']} · {r['params']['model_label']} · {r['status']}"
                                                 for r in runs if r["id"] == i))


@st.fragment(run_every=1)
def live(run_id: int) -> None:
    jobs.mark_interrupted(store)
    run = store.run(run_id)
    if run["status"] not in jobs.ACTIVE:
        st.rerun(scope="app")  # finished: the results render outside this fragment, once
    st.progress(min(1.0, run["iteration"] / max(1, run["total"])),
                text=f"{run['status']} · frame {run['iteration']} / {run['total']}")
    preview = jobs.track_outputs(store, run_id)["preview"]
    if preview.is_file():
        st.image(str(preview), caption="latest annotated frame", width=640)
    if st.button("Stop", key=f"stop{run_id}"):
        jobs.request_stop(store, run_id)


def results(run: dict) -> None:
    files = jobs.track_outputs(store, run["id"])
    summary = run["metrics"].get("summary", {})
    if run["error"]:
        (st.warning if run["status"] in ("done", "stopped") else st.error)(run["error"])
    if not files["video"].is_file():
        return
    left, right = st.columns([3, 2])
    left.video(str(files["video"]))
    tracks = read_mot(files["mot"])
    fps = videos[run["params"]["video_id"]]["fps"] or 25.0
    table = track_table(tracks, fps)
    m1, m2, m3 = right.columns(3)
    m1.metric("Unique cows", len(table))
    m2.metric("Most at once", summary.get("max_cows_in_frame", 0))
    reused = summary.get("reused_frames", 0)
    m3.metric("Speed", f"{summary.get('fps', 0):.0f} fps",
              help=f"{reused} of {summary.get('detected_frames', 0)} detected frames were kept from an earlier run "
                   "of this model on this video, not detected again" if reused else None)
    if "mot" in run["metrics"]:
        mot = run["metrics"]["mot"]
        g1, g2, g3 = right.columns(3)
        g1.metric("MOTA", f"{mot['mota']:.3f}")
        g2.metric("IDF1", f"{mot['idf1']:.3f}")
        g3.metric("ID switches", mot["id_switches"])
    right.dataframe(table, hide_index=True, height=220)
    d1, d2 = right.columns(2)
    d1.download_button("Tracks CSV", files["csv"].read_bytes(), f"tracks-run{run['id']}.csv", "text/csv")
    d2.download_button("MOTChallenge", files["mot"].read_bytes(), f"tracks-run{run['id']}.txt", "text/plain")
    counts = counts_per_frame(tracks, summary.get("frames", 0))
    st.area_chart(counts.set_index("frame"), x_label="frame", y_label="cows tracked", height=180)


current = store.run(chosen)
if current["status"] in jobs.ACTIVE:
    live(chosen)
else:
    results(current)

done = [r for r in runs if r["status"] == "done"]
if len(done) >= 2:
    st.subheader("Compare two models on this video")
    labels = {r["id"]: f"run {r['id']} · {r['params']['model_label']}" for r in done}
    pair = st.multiselect("Runs", list(labels), default=list(labels)[:2], max_selections=2, format_func=labels.get)
    if len(pair) == 2:
        rows = []
        for run_id in pair:
            run = next(r for r in done if r["id"] == run_id)
            summary, mot = run["metrics"]["summary"], run["metrics"].get("mot", {})
            rows.append({"run": labels[run_id], "tracks": summary["num_tracks"],
                         "most at once": summary["max_cows_in_frame"], "fps": summary["fps"],
                         **{k: mot.get(k) for k in ("mota", "idf1", "id_switches", "fragmentations",
                                                    "mostly_tracked", "mostly_lost")}})
        table = pd.DataFrame(rows).set_index("run")
        st.dataframe(table)
        if table["mota"].notna().all():
            st.bar_chart(table[["mota", "idf1"]].T, stack=False, height=220)
        else:
            st.caption("MOTA and IDF1 need ground truth: upload it with the video (MOTChallenge text).")
        for col, run_id in zip(st.columns(2), pair):
            col.caption(labels[run_id])
            col.video(str(jobs.track_outputs(store, run_id)["video"]))
