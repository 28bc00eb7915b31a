"""Fine-tuning that finds small cows and does not forget: training recipes side by side in one run.

Each recipe fine-tunes the pretrained SSD-MobileNetV2 for the same iterations on the demo data's
train split, then is scored on the demo test split (mAP50) and on the two real COCO photos in
../shared/real (mAP, mAP50, and distant cows found with tiles auto). The photos are not in the
repository: they are read from ../shared/real. Usage:
python bench/bench_forgetting.py --data-dir DEMO_DATA [--iterations 100] [--recipes today tiles ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_tiles import found, real_photos  # noqa: E402

from cowdetect import DetectorBox, Store, TrainConfig  # noqa: E402

RECIPES = {
    "today": {},
    "tile crops": {"tile_crops": 0.5},
    "backbone lr 0.1": {"backbone_lr": 0.1},
    "WiSE-FT 0.5": {"keep_start": 0.5},
    "all three": {"tile_crops": 0.5, "backbone_lr": 0.1, "keep_start": 0.5},
    "backbone 0.1 + WiSE-FT 0.5": {"backbone_lr": 0.1, "keep_start": 0.5},
    "backbone 0.1 + WiSE-FT 0.7": {"backbone_lr": 0.1, "keep_start": 0.7},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a data folder with the demo data (python -m cowdetect demo)")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--save", help="folder to keep each recipe's checkpoint in")
    parser.add_argument("--no-pretrained", action="store_true", help="skip the pretrained model's row")
    args = parser.parse_args()
    store = Store(args.data_dir)
    train, test, real = store.dataset("train"), store.dataset("test"), real_photos()
    print("| recipe | demo test mAP50 | real mAP (tiles off) | real mAP50 (off) | real mAP (auto) | "
          "real mAP50 (auto) | distant found (auto) | train s |")
    print("|---|---|---|---|---|---|---|---|")
    rows = [] if args.no_pretrained else [("pretrained", DetectorBox.pretrained("cpu"), 0.0)]
    for name in args.recipes:
        box = DetectorBox.pretrained("cpu")
        start = time.perf_counter()
        box.train(train, config=TrainConfig.for_architecture(box.architecture, iterations=args.iterations,
                                                              **RECIPES[name]))
        rows.append((name, box, time.perf_counter() - start))
        if args.save:
            box.save(Path(args.save) / f"{name.replace(' ', '_')}.pt")
    for name, box, seconds in rows:
        demo = box.evaluate(test).map_50
        _, off_map, off_50 = found(box, real, "off")
        photos, auto_map, auto_50 = found(box, real, "auto")
        print(f"| {name} | {demo:.3f} | {off_map:.3f} | {off_50:.3f} | {auto_map:.3f} | {auto_50:.3f} | "
              f"{photos[1]} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
