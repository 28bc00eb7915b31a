"""Counting cows across a line: counted vs true on the demo video, for the pretrained and a fine-tuned model.

On the demo video (640x360, 25 fps, 12 s, MOTChallenge ground truth) a vertical line "gate" is drawn
from (243, 360) up to (243, 120) — all five cows walk over it (cows 1 and 4 left to right, forward; cows
2, 3 and 5 right to left, backward; cow 4 grazes slowly over it, cow 3 only near the end) — and a zone "left"
(the left third of the pasture). The true counts are the Counter run over the ground-truth tracks.
Each model tracks the video as the product does (a tracking job with the lines and zones, default
tracker settings, detect every 3rd frame); printed per model: crossings counted vs true each way,
crossings matched to a true one (same direction, within 1 s), the same tracks counted without the
hysteresis band (every wobble counts), the zone's most-inside vs true, and unique tracks (5 cows)
for contrast. Models: the pretrained COCO SSD and that model fine-tuned ITERATIONS on the demo's
training images (a training job, as bench_loop.py does).

Usage: python bench/bench_counting.py [--iterations 100] [--work /tmp/bench-counting] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("COWDETECT_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect import jobs  # noqa: E402
from cowdetect.counting import Counter, replay  # noqa: E402
from cowdetect.geometry import Line, Zone, geometry_from_dict, geometry_to_dict  # noqa: E402
from cowdetect.demo import make_demo  # noqa: E402
from cowdetect.mot import read_mot  # noqa: E402
from cowdetect.store import Store  # noqa: E402

QUIET = lambda message: None  # noqa: E731
GEOMETRY = geometry_to_dict([Line("gate", 243, 360, 243, 120)],
                            [Zone("left", ((0, 190), (213, 190), (213, 360), (0, 360)))])


def matched(counted: list[dict], true: list[dict], fps: float) -> int:
    """Counted crossings paired one-to-one with a true one of the same direction within 1 s."""
    left = list(true)
    hits = 0
    for c in counted:
        near = [t for t in left if t["direction"] == c["direction"] and abs(t["frame"] - c["frame"]) <= fps]
        if near:
            left.remove(min(near, key=lambda t: abs(t["frame"] - c["frame"])))
            hits += 1
    return hits


def row(name: str, store: Store, run_id: int, truth: dict, fps: float, frames: int) -> str:
    run = store.run(run_id)
    (line,), (zone,) = run.metrics["counts"]["lines"], run.metrics["counts"]["zones"]
    (true_line,), (true_zone,) = truth["lines"], truth["zones"]
    lines, zones = geometry_from_dict(run.params["geometry"])
    tracks = read_mot(jobs.track_outputs(store, run_id)["mot"])
    bare = replay(Counter(lines, zones, hysteresis=0.0), tracks, fps, frames).summary()["lines"][0]
    exact = line["forward"] == true_line["forward"] and line["backward"] == true_line["backward"]
    return (f"| {name} | {line['forward']} / {true_line['forward']} | {line['backward']} / {true_line['backward']} | "
            f"{'yes' if exact else 'no'} | {matched(line['crossings'], true_line['crossings'], fps)} of "
            f"{len(true_line['crossings'])} | {bare['forward']} / {bare['backward']} | "
            f"{zone['max_inside']} / {true_zone['max_inside']} | {run.metrics['summary']['num_tracks']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--work", default="/tmp/bench-counting", help="the data folder (kept: a second run reuses it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = Store(args.work)
    started = time.perf_counter()
    if not store.videos():
        make_demo(store, n_train=200, n_val=0, n_test=0, seed=args.seed)
        print(f"demo data made in {time.perf_counter() - started:.0f} s", flush=True)
    video = [v for v in store.videos() if v.original_name == "demo-cows.mp4"][-1]
    store.set_video_geometry(video.id, GEOMETRY)
    truth_tracks = read_mot(video.gt_path)
    truth = replay(Counter(*geometry_from_dict(GEOMETRY)), truth_tracks[truth_tracks["conf"] != 0], video.fps,
                   video.frames).summary()
    print(f"true crossings of gate: {[(c['track_id'], c['direction'], c['frame']) for c in truth['lines'][0]['crossings']]}")
    name = f"ft{args.iterations}-s{args.seed}"
    if name not in {m.name for m in store.models()}:
        settings = jobs.training_settings(store, "pretrained", iterations=args.iterations, eval_every=0, name=name,
                                          seed=args.seed)
        t0 = time.perf_counter()
        assert jobs.run_training(store, jobs.create_training_run(store, settings), log=QUIET).status == "done"
        print(f"fine-tuned {args.iterations} iterations in {time.perf_counter() - t0:.0f} s", flush=True)
    print("| model | forward counted / true | backward counted / true | exact | crossings matched (±1 s) | "
          "without hysteresis fwd / back | zone most inside / true | unique tracks (5 cows) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, spec in (("pretrained COCO SSD", "pretrained"), (f"fine-tuned {args.iterations} iterations", name)):
        run_id = jobs.create_tracking_run(store, jobs.tracking_settings(store, video.id, model=spec))
        assert jobs.run_tracking(store, run_id, log=QUIET).status == "done"
        print(row(label, store, run_id, truth, video.fps, video.frames), flush=True)
    print(f"(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
