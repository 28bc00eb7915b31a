"""The loop's payoff, side by side: label the frames where tracking broke vs evenly spaced frames.

On the demo video (its MOTChallenge ground truth plays the labeler: an "oracle" that answers
with the true boxes of a frame), the pretrained SSD tracks the video; then, in two copies of
the same data folder, K frames are added and labeled by the oracle — (a) the frames the
tracking run listed as worth labeling, (b) K evenly spaced frames — the same pretrained model
is fine-tuned for the same iterations with the same seed on each, and the video is tracked
again. A second demo video (another seed, never labeled) shows whether the gain carries over.
Everything goes through the product's own functions (jobs, store, import).

Usage: python bench/bench_loop.py [--iterations 100] [--seeds 0 1] [--work /tmp/bench-loop]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("COWDETECT_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cowdetect import jobs  # noqa: E402
from cowdetect.demo import make_demo_video  # noqa: E402
from cowdetect.detections import Detections  # noqa: E402
from cowdetect.frames import import_frames  # noqa: E402
from cowdetect.jobs.tolabel import frames_to_label_of, import_run_frames  # noqa: E402
from cowdetect.mot import read_mot  # noqa: E402
from cowdetect.store import Store  # noqa: E402

QUIET = lambda message: None  # noqa: E731


def track(store: Store, video_id: int, model: str) -> dict:
    """Track with ``model``; MOTA, IDF1, ID switches and the run id."""
    run_id = jobs.create_tracking_run(store, jobs.tracking_settings(store, video_id, model=model))
    run = jobs.run_tracking(store, run_id, log=QUIET)
    mot = run.metrics["mot"]
    return {"run": run_id, "mota": mot["mota"], "idf1": mot["idf1"], "switches": mot["id_switches"]}


def oracle_label(store: Store, video_id: int, image_ids: list[int]) -> None:
    """Label the imported frames with the video's ground truth (visible boxes), into the train split."""
    video = store.video(video_id)
    truth = read_mot(video.gt_path)
    truth = truth[truth["conf"] != 0]
    vocab = store.class_names()
    for image_id in image_ids:
        image = store.image(image_id)
        rows = truth[truth["frame"] == image.frame_index + 1]
        xyxy = np.stack([rows["x"], rows["y"], rows["x"] + rows["w"], rows["y"] + rows["h"]], 1).astype(np.float32)
        xyxy = np.clip(xyxy, 0, [image.width, image.height, image.width, image.height]).reshape(-1, 4)
        store.set_boxes(image_id, Detections.from_names(xyxy, ["cow"] * len(xyxy), vocab))
    store.set_split(image_ids, "train")


def fine_tune_and_track(store: Store, videos: list[int], iterations: int, seed: int, name: str) -> list[dict]:
    settings = jobs.training_settings(store, "pretrained", iterations=iterations, eval_every=0, name=name, seed=seed)
    run_id = jobs.create_training_run(store, settings)
    started = time.perf_counter()
    run = jobs.run_training(store, run_id, log=QUIET)
    assert run.status == "done", run
    print(f"  {name}: trained {iterations} iterations in {time.perf_counter() - started:.0f} s", flush=True)
    return [track(store, v, name) for v in videos]


def arm(base: Path, work: Path, label: str, choose, iterations: int, seed: int, videos: list[int]) -> list[dict]:
    folder = work / label
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder)
    store = Store(folder)
    image_ids = choose(store)
    oracle_label(store, videos[0], image_ids)
    return fine_tune_and_track(store, videos, iterations, seed, f"{label}-s{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-loop"))
    args = parser.parse_args()
    base = args.work / "base"
    shutil.rmtree(base, ignore_errors=True)
    store = Store(base)
    weights = ROOT / "data" / "weights"
    if weights.is_dir():  # the converted SSD weights, so the copy does not convert them again
        shutil.copytree(weights, store.weights_dir, dirs_exist_ok=True)
    videos = [make_demo_video(store, seed=0), make_demo_video(store, seed=1)]
    before = [track(store, v, "pretrained") for v in videos]
    found = frames_to_label_of(store, before[0]["run"])
    k = len(found)
    frames = store.video(videos[0]).frames
    even = [int(round(f)) for f in np.linspace(0, frames - 1, k + 2)[1:-1]]
    print(f"baseline: {before}; {k} frames worth labeling: {[f['frame'] for f in found]}; even: {even}", flush=True)
    choices = {"broke": lambda s: import_run_frames(s, before[0]["run"]).images,
               "even": lambda s: import_frames(s, videos[0], {f: None for f in even}).images}
    rows = []
    for seed in args.seeds:
        for label, choose in choices.items():
            rows.append((label, seed, arm(base, args.work, label, choose, args.iterations, seed, videos)))
    print(f"\nK = {k} frames, {args.iterations} iterations from the pretrained SSD; MOTA / IDF1 / ID switches")
    print("| frames labeled | seed | demo video (labeled frames from it) | held-out demo video (seed 1) |")
    print("|---|---|---|---|")
    fmt = lambda r: f"{r['mota']:.3f} / {r['idf1']:.3f} / {r['switches']}"  # noqa: E731
    print(f"| none (pretrained) | – | {fmt(before[0])} | {fmt(before[1])} |")
    for label, seed, result in rows:
        name = "where tracking broke" if label == "broke" else "evenly spaced"
        print(f"| {name} | {seed} | {fmt(result[0])} | {fmt(result[1])} |")


if __name__ == "__main__":
    main()
