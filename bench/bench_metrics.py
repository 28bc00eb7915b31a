"""COCO evaluation backends on 1,000 demo images: torchmetrics with faster_coco_eval vs pycocotools.

Ground truth: the boxes of 1,000 demo scenes (rendered from the seed, 640x480). Predictions:
each box jittered by a few pixels, a fifth of them dropped, two false positives per image,
random scores — the shape of a decent detector's output. Both backends score the same data
(interleaved, median of --repeats); the numbers must agree and the time ratio is printed.
Usage: python bench/bench_metrics.py [--images 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect.demo import render_scene  # noqa: E402
from cowdetect.detections import Detections  # noqa: E402
from cowdetect.metrics import evaluate_detections  # noqa: E402

VOCAB = ("__background__", "cow")


def data(n: int) -> tuple[list[Detections], list[Detections]]:
    rng = np.random.default_rng(0)
    gts, preds = [], []
    for index in range(n):
        _, boxes = render_scene(np.random.default_rng([0, 3, index]), 640, 480)
        gt = np.array(boxes, np.float32).reshape(-1, 4)
        gts.append(Detections.from_names(gt, ["cow"] * len(gt), VOCAB))
        keep = rng.random(len(gt)) > 0.2
        kept = gt[keep] + rng.normal(0, 4, (int(keep.sum()), 4))
        corner = rng.uniform(0, 560, (2, 2))
        extra = np.concatenate([corner, corner + rng.uniform(20, 80, (2, 2))], axis=1)
        boxes = np.concatenate([kept.reshape(-1, 4), extra]).clip(0, 640).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        preds.append(Detections.from_names(boxes, ["cow"] * len(boxes), VOCAB,
                                           rng.uniform(0.05, 1.0, len(boxes)).astype(np.float32)))
    return preds, gts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    t0 = time.perf_counter()
    preds, gts = data(args.images)
    print(f"{args.images} demo images, {sum(len(g) for g in gts)} cows, {sum(len(p) for p in preds)} predictions "
          f"(made in {time.perf_counter() - t0:.0f} s)")
    times: dict[str, list[float]] = {"faster_coco_eval": [], "pycocotools": []}
    results = {}
    for _ in range(args.repeats):
        for backend in times:
            start = time.perf_counter()
            results[backend] = evaluate_detections(preds, gts, backend=backend)
            times[backend].append(time.perf_counter() - start)
    fast, slow = (statistics.median(times[b]) for b in ("faster_coco_eval", "pycocotools"))
    same = all(abs(getattr(results["faster_coco_eval"], k) - getattr(results["pycocotools"], k)) <= 1e-6
               for k in ("map", "map_50", "map_75", "mar_100"))
    print(f"{'backend':<18} {'s (median)':>10}  mAP      mAP50")
    for backend in times:
        r = results[backend]
        print(f"{backend:<18} {statistics.median(times[backend]):>10.2f}  {r.map:.6f} {r.map_50:.6f}")
    print(f"pycocotools / faster_coco_eval time: {slow / fast:.2f}x; same numbers (<= 1e-6): {same}")


if __name__ == "__main__":
    main()
