"""Active learning vs random, side by side: which 40 images to label after the first 20.

From 20 labeled demo images (chosen at random per seed) the pretrained SSD is fine-tuned; that
model pre-labels the unlabeled pool (the pre-label job, which scores each image's uncertainty),
and 40 more images are labeled by an "oracle" (the demo's own boxes) — (a) the first 40 of
"next to label" (``Store.to_label``: most uncertain first, near-identical images skipped) or
(b) 40 at random. Each arm fine-tunes the pretrained SSD on its 60 images for the same
iterations with the same seed, and is scored on the demo test split (mAP, mAP50). Repeated over
seeds; the table shows each seed, the mean and the spread. Everything goes through the
product's own jobs and store.

Usage: python bench/bench_active.py [--seeds 0 1 2] [--iterations 100] [--pool 160] [--work /tmp/bench-active]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("COWDETECT_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from cowdetect import jobs  # noqa: E402
from cowdetect.demo import demo_image  # noqa: E402
from cowdetect.detections import Detections  # noqa: E402
from cowdetect.store import Store  # noqa: E402

QUIET = lambda message: None  # noqa: E731
FIRST, MORE, TEST = 20, 40, 50


def base_store(folder: Path, pool: int) -> tuple[Store, dict[int, object]]:
    """Pool images unlabeled ('unassigned'), the test split labeled; returns the oracle's answers."""
    shutil.rmtree(folder, ignore_errors=True)
    store = Store(folder)
    weights = ROOT / "data" / "weights"
    if weights.is_dir():
        shutil.copytree(weights, store.weights_dir, dirs_exist_ok=True)
    oracle = {}
    for index in range(pool):
        data, boxes = demo_image(0, "train", index)
        record, _ = store.add_image(data, name=f"pool-{index:04d}.jpg")
        oracle[record.id] = boxes
    for index in range(TEST):
        data, boxes = demo_image(0, "test", index)
        store.add_image(data, name=f"test-{index:04d}.jpg", split="test", boxes=boxes)
    return store, oracle


def label(store: Store, oracle: dict, image_ids: list[int]) -> None:
    vocab = store.class_names()
    for image_id in image_ids:
        boxes = oracle[image_id]
        store.set_boxes(image_id, Detections.from_names(boxes.xyxy, list(boxes.names), vocab))
    store.set_split(image_ids, "train")


def fine_tune(store: Store, iterations: int, seed: int, name: str) -> dict:
    settings = jobs.training_settings(store, "pretrained", iterations=iterations, eval_every=0, name=name, seed=seed)
    started = time.perf_counter()
    run = jobs.run_training(store, jobs.create_training_run(store, settings), log=QUIET)
    assert run.status == "done", run
    after = run.metrics["after"]
    print(f"  {name}: {iterations} iterations in {time.perf_counter() - started:.0f} s, test mAP {after['map']:.3f}",
          flush=True)
    return {"map": after["map"], "map_50": after["map_50"]}


def one_seed(base: Path, work: Path, oracle: dict, seed: int, iterations: int) -> dict[str, dict]:
    folder = work / f"seed{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder)
    store = Store(folder)
    rng = np.random.default_rng(seed)
    pool = sorted(oracle)
    first = [int(i) for i in rng.choice(pool, FIRST, replace=False)]
    label(store, oracle, first)
    fine_tune(store, iterations, seed, f"first20-s{seed}")
    settings = jobs.prelabel_settings(store, f"first20-s{seed}", unlabeled=True)
    jobs.run_prelabel(store, jobs.create_prelabel_run(store, settings), log=QUIET)
    picked = {"uncertainty": [r.id for r in store.to_label(limit=MORE, order="uncertainty")],
              "random": [int(i) for i in rng.choice(sorted(set(pool) - set(first)), MORE, replace=False)]}
    out = {}
    for arm, ids in picked.items():
        arm_folder = work / f"seed{seed}-{arm}"
        shutil.rmtree(arm_folder, ignore_errors=True)
        shutil.copytree(folder, arm_folder)
        arm_store = Store(arm_folder)
        label(arm_store, oracle, ids)
        out[arm] = fine_tune(arm_store, iterations, seed, f"{arm}-s{seed}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--pool", type=int, default=160)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-active"))
    args = parser.parse_args()
    _, oracle = base_store(args.work / "base", args.pool)
    results = {seed: one_seed(args.work / "base", args.work, oracle, seed, args.iterations) for seed in args.seeds}
    print(f"\n{FIRST} labeled + {MORE} chosen of a pool of {args.pool} demo images; {args.iterations} iterations "
          f"from the pretrained SSD; test mAP / mAP50 on {TEST} demo test images")
    print("| 40 more images chosen | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std (mAP) |")
    print("|---|" + "---|" * len(args.seeds) + "---|")
    for arm, name in (("uncertainty", "most uncertain first (next to label)"), ("random", "at random")):
        maps = [results[s][arm]["map"] for s in args.seeds]
        cells = " | ".join(f"{results[s][arm]['map']:.3f} / {results[s][arm]['map_50']:.3f}" for s in args.seeds)
        spread = statistics.stdev(maps) if len(maps) > 1 else 0.0
        print(f"| {name} | {cells} | {statistics.mean(maps):.3f} ± {spread:.3f} |")


if __name__ == "__main__":
    main()
