"""Identity against a peer tracker on identical detections: Norfair (ours) against ByteTrack.

The demo video (640x360, 25 fps, 12 s, 5 cows, MOTChallenge ground truth) is encoded and decoded
as a tracking run would read it, detected ONCE on every frame (kept in a cowdetect.framecache
file), and every tracker then gets the very same boxes:
  * Norfair with the old defaults (IoU, no ReID, no low-score pass) — the seed's settings;
  * Norfair with today's TrackConfig() defaults, and ablations that switch one thing off;
  * roboflow's `trackers` ByteTrack at its defaults (frame_rate 30), and told the video's 25 fps, only when
    ``--trackers-path DIR`` names a folder it was installed into (it declares numpy >= 2, so it
    never goes into the project's environment; it runs on numpy 1.26):
      pip install --no-deps --target DIR trackers==2.6.1 supervision==0.26.1 pydeprecate==0.14.0 \
          defusedxml==0.7.1 tqdm==4.70.1
Each at detect_every k = 1 and 3 (the detected frames are those a tracking run detects), on the
model's boxes (``--model``: pretrained or a checkpoint) and on the ground-truth boxes as
detections (the tracker alone). Scores from cowdetect.mot (motmetrics, IoU >= 0.5): MOTA, IDF1,
ID switches, fragmentations, tracks, and the tracker's own CPU time for the 300 frames (process time, so
other programs on the machine do not inflate it).

ByteTrack reports only boxes of detected frames; at k = 3 it is given the detected frames with
their timestamps and its last boxes are held on the frames in between (Norfair predicts those).
Usage: python bench/bench_trackers.py [--trackers-path DIR] [--model pretrained|PATH]
                                      [--detect-every 1 3] [--keep DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cowdetect import DetectorBox  # noqa: E402
from cowdetect.config import TrackConfig  # noqa: E402
from cowdetect.demo import mot_lines, render_video  # noqa: E402
from cowdetect.detections import Detections  # noqa: E402
from cowdetect.detector import set_threads  # noqa: E402
from cowdetect.framecache import FrameDetections  # noqa: E402
from cowdetect.mot import mot_line, mot_scores, read_mot  # noqa: E402
from cowdetect.tracking import CowTracker  # noqa: E402
from cowdetect.video import VideoReader, write_video  # noqa: E402

FPS = 25
COW = ("__background__", "cow")
# The seed's settings, spelled out: TrackConfig's defaults may move on, this row must not.
OLD = dict(distance="iou", distance_threshold=None, hit_counter_max=30, initialization_delay=3)
# The new association features, each off: a config with all of them is the seed's tracker.
FEATURES_OFF: dict[str, dict] = {"low-score pass": {"low_score_threshold": None},
                                  "ReID": {"reid_distance_threshold": None}}


def demo(tmp: Path) -> tuple[list[np.ndarray], pd.DataFrame]:
    """The demo video's frames as a tracking run decodes them (RGB), and its ground truth."""
    lines: list[str] = []

    def frames():
        for index, (frame, truth) in enumerate(render_video(0, 640, 360, FPS, 12.0)):
            lines.extend(mot_lines(index, truth))
            yield frame

    write_video(frames(), tmp / "demo.mp4", FPS)
    (tmp / "gt.txt").write_text("\n".join(lines) + "\n")
    return [f.rgb for f in VideoReader(tmp / "demo.mp4")], read_mot(tmp / "gt.txt")


def detect_all(box: DetectorBox, frames: list[np.ndarray], cache: FrameDetections) -> float:
    """Detect every frame not in ``cache`` yet (batches of 4, as tracking does); seconds spent."""
    todo = [i for i in range(len(frames)) if cache.get(i) is None]
    t0 = time.perf_counter()
    for start in range(0, len(todo), 4):
        batch = todo[start:start + 4]
        for i, dets in zip(batch, box.predict([frames[i] for i in batch], batch_size=len(batch))):
            cache.put(i, dets)
    return time.perf_counter() - t0


def truth_detections(gt: pd.DataFrame, count: int) -> list[Detections]:
    """The ground-truth boxes of each frame as detections with score 1 (the tracker alone)."""
    out = []
    for i in range(count):
        rows = gt[gt["frame"] == i + 1]
        xyxy = rows[["x", "y", "w", "h"]].to_numpy(np.float32)
        xyxy[:, 2:] += xyxy[:, :2]
        out.append(Detections(xyxy, np.ones(len(rows), np.int64), np.ones(len(rows), np.float32), COW))
    return out


def cows(dets: Detections, score: float) -> Detections:
    """The cow boxes scoring at least ``score`` (what a tracking run gives the tracker)."""
    dets = dets.above(score)
    return dets[np.array([n == "cow" for n in dets.names], bool)] if len(dets) else dets


def run_norfair(config: TrackConfig, raw: list[Detections], frames: list[np.ndarray]) -> tuple[list[str], float]:
    """Drive CowTracker as cowdetect.tracking._Pipeline does; MOT lines and seconds in the tracker."""
    tracker, lines, spent, k = CowTracker(config), [], 0.0, config.detect_every
    low = min(config.score_threshold, config.score_threshold if config.low_score_threshold is None
              else config.low_score_threshold)
    for i, frame in enumerate(frames):
        dets = cows(raw[i], low) if i % k == 0 else None
        t0 = time.process_time()
        tracks = tracker.update(dets, period=k if dets is not None else 1, rgb=frame)
        spent += time.process_time() - t0
        lines += [mot_line(i, t, b, s) for t, b, s in zip(tracks.ids, tracks.xyxy, tracks.score)]
    return lines, spent


def run_bytetrack(k: int, raw: list[Detections], frames: list[np.ndarray], score: float,
                  frame_rate: float | None) -> tuple[list[str], float]:
    """ByteTrack at its defaults (``frame_rate`` None: its own, 30) on the detected frames (with their
    times); its boxes held in between."""
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker() if frame_rate is None else ByteTrackTracker(frame_rate=frame_rate)
    lines, spent, held = [], 0.0, []
    for i in range(len(frames)):
        if i % k == 0:
            dets = cows(raw[i], score)
            t0 = time.process_time()
            out = tracker.update(sv.Detections(xyxy=dets.xyxy.astype(np.float32), confidence=dets.score,
                                               class_id=np.zeros(len(dets), int)), timestamp=i / FPS if k > 1 else None)
            spent += time.process_time() - t0
            keep = out.tracker_id >= 0
            held = list(zip(out.tracker_id[keep], out.xyxy[keep], out.confidence[keep]))
        lines += [mot_line(i, int(t), b, float(s)) for t, b, s in held]
    return lines, spent


def score(lines: list[str], gt: pd.DataFrame, tmp: Path) -> dict:
    (tmp / "hyp.txt").write_text("".join(lines))
    return mot_scores(gt, read_mot(tmp / "hyp.txt"))


def variants(k: int) -> list[tuple[str, TrackConfig]]:
    """(row name, config) of the Norfair rows at detect_every ``k``."""
    rows = [("norfair old defaults", TrackConfig(**OLD, **{f: v for off in FEATURES_OFF.values()
                                                            for f, v in off.items()}, detect_every=k)),
            ("norfair new defaults", TrackConfig(detect_every=k))]
    rows += [(f"  new, {name} off", replace(TrackConfig(detect_every=k), **off)) for name, off in FEATURES_OFF.items()]
    return rows


def table(sources: dict[str, list[Detections]], frames: list[np.ndarray], gt: pd.DataFrame, ks: list[int],
          bytetrack: bool, tmp: Path) -> None:
    print(f"{'detections':<11} {'k':>2} {'tracker':<34} {'MOTA':>6} {'IDF1':>6} {'IDsw':>5} {'frag':>5} "
          f"{'tracks':>6} {'cpu ms':>6}")
    for source, raw in sources.items():
        for k in ks:
            runs: list[tuple[str, Callable[[], tuple[list[str], float]]]] = [
                (name, lambda c=config: run_norfair(c, raw, frames)) for name, config in variants(k)]
            if bytetrack:  # its lost-track buffer is 30 frames at 30 fps: frame_rate 25 keeps 25 frames
                runs += [(f"bytetrack 2.6.1, {label}", lambda rate=rate: run_bytetrack(
                    k, raw, frames, TrackConfig().score_threshold, rate)) for label, rate in
                         (("defaults", None), (f"frame_rate={FPS}", FPS))]
            for name, fn in runs:
                lines, seconds = fn()
                s = score(lines, gt, tmp)
                print(f"{source:<11} {k:>2} {name:<34} {s['mota']:>6.3f} {s['idf1']:>6.3f} {s['id_switches']:>5} "
                      f"{s['fragmentations']:>5} {s['num_tracks']:>6} {seconds * 1000:>6.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trackers-path", type=Path, help="folder where `trackers` was pip-installed --target")
    parser.add_argument("--model", default="pretrained", help="'pretrained' or a checkpoint file")
    parser.add_argument("--detect-every", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--keep", type=Path, help="keep the detections in this folder (re-runs detect nothing)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    bytetrack = args.trackers_path is not None
    if bytetrack:
        sys.path.insert(0, str(args.trackers_path.resolve()))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames, gt = demo(tmp)
        box = DetectorBox.pretrained("cpu", weights_dir=tmp / "weights") if args.model == "pretrained" \
            else DetectorBox.load(args.model, device="cpu")
        keep = (args.keep or tmp) / f"{Path(args.model).stem}-{len(frames)}.f32"
        with FrameDetections(keep, box.class_names) as cache:
            seconds = detect_all(box, frames, cache)
            raw = [cache.get(i) for i in range(len(frames))]
        print(f"{box.origin} · {len(frames)} frames 640x360 detected in {seconds:.1f} s (torch threads {threads}) · "
              f"score >= {TrackConfig().score_threshold}")
        table({args.model[:11]: raw, "truth": truth_detections(gt, len(frames))}, frames, gt,
              args.detect_every, bytetrack, tmp)
        if not bytetrack:
            print("ByteTrack rows: install `trackers` into a folder (see this file's docstring) and pass "
                  "--trackers-path FOLDER")


if __name__ == "__main__":
    main()
