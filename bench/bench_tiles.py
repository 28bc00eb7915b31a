"""Small, distant cows: the two real COCO photos in ../shared/real, tiles off vs auto (and fixed grids),
for the pretrained detector and for model checkpoints given with --model, side by side in one run.

Prints per photo the cows found (a box of class cow with IoU >= 0.5 and score >= 0.3) and mAP / mAP50
over both photos, and the time per image on a 1920x1080 frame. The photos are not in the repository
(their licence forbids it): they are read from ../shared/real beside the checkout.
The pretrained SSD is measured twice: as shipped (cow scored as cow+horse+sheep) and with cow scored alone.
Usage: python bench/bench_tiles.py [--model PATH.pt ...] [--grids auto 3x3 4x4] [--demo-dir DEMO]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect import DetectorBox, LabeledDataset  # noqa: E402
from cowdetect.images import load_image  # noqa: E402
from cowdetect.metrics import match  # noqa: E402
from cowdetect.store import Store  # noqa: E402

REAL = ROOT.parent / "shared" / "real"


def real_photos() -> LabeledDataset:
    """The photos and their cow boxes (COCO [x, y, w, h] → xyxy px)."""
    coco = json.loads((REAL / "annotations.json").read_text())
    images, boxes, labels = [], [], []
    for im in coco["images"]:
        anns = [a["bbox"] for a in coco["annotations"] if a["image_id"] == im["id"]]
        images.append(load_image(REAL / im["file_name"]))
        boxes.append([[x, y, x + w, y + h] for x, y, w, h in anns])
        labels.append(["cow"] * len(anns))
    return LabeledDataset.from_lists(images, boxes, labels, name="real")


def found(box: DetectorBox, data: LabeledDataset, tiles: str) -> tuple[list[str], float, float]:
    preds = box.predict_dataset(data, tiles=tiles)
    per_photo = []
    for sample, pred in zip(data, preds):
        cows = pred.with_class_names(data.class_names).above(0.3)
        _, matched = match(cows, sample.boxes, 0.5)
        per_photo.append(f"{int(matched.sum())}/{len(sample.boxes)}")
    result = box.evaluate(data, predictions=preds)
    return per_photo, result.map, result.map_50


def seconds_per_frame(box: DetectorBox, tiles: str, repeats: int = 3) -> float:
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), np.uint8)
    box.predict(frame, tiles=tiles)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        box.predict(frame, tiles=tiles)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="also a checkpoint (repeatable)")
    parser.add_argument("--grids", nargs="+", default=["off", "auto", "3x3", "4x4"])
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--demo-dir", help="a data folder with the demo data: also its test split's mAP (tiles off)")
    args = parser.parse_args()
    data = real_photos()
    alone = DetectorBox.pretrained("cpu")
    alone.set_score_group(())  # the COCO SSD as it was: cow's own score, not cow+horse+sheep
    boxes = [("pretrained", DetectorBox.pretrained("cpu")), ("pretrained, cow scored alone", alone)] + \
        [(Path(m).name, DetectorBox.load(m, "cpu")) for m in args.model]
    demo = Store(args.demo_dir).dataset("test") if args.demo_dir else None
    print("| model | tiles | near cows (photo 1) | distant cows (photo 2) | mAP | mAP50 | demo test mAP / mAP50 |")
    print("|---|---|---|---|---|---|---|")
    for name, box in boxes:
        for grid in args.grids:
            photos, m, m50 = found(box, data, grid)
            on_demo = box.evaluate(demo) if demo is not None and grid == "off" else None
            shown = f"{on_demo.map:.3f} / {on_demo.map_50:.3f}" if on_demo else ""
            print(f"| {name} | {grid} | {photos[0]} | {photos[1]} | {m:.3f} | {m50:.3f} | {shown} |", flush=True)
    if not args.no_timing:
        box = boxes[0][1]
        off, auto = seconds_per_frame(box, "off"), seconds_per_frame(box, "auto")
        print(f"\n1920x1080 frame, {box.architecture}: tiles off {off * 1000:.0f} ms, auto {auto * 1000:.0f} ms "
              f"({auto / off:.1f}x)")


if __name__ == "__main__":
    main()
