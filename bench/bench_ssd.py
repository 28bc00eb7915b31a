"""SSD-MobileNetV2 COCO: our PyTorch port against OpenCV DNN on the same TensorFlow graph.

Prints, measured side by side in one run (interleaved, medians):
  * predict latency, image → detections, on the same photo: DetectorBox.predict vs.
    cv2.dnn (blobFromImage + forward with the graph's DetectionOutput), at 2 and 1 torch
    threads, with the machine idle and with another process holding one core;
  * fine-tuning steps/s at batch 8 (300 px) on the demo images.
Usage: python bench/bench_ssd.py [--repeats N] [--image PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect import DetectorBox, Store, TrainConfig, make_demo  # noqa: E402
from cowdetect.demo import demo_image  # noqa: E402
from cowdetect.images import load_image  # noqa: E402
from timing import interleaved  # noqa: E402
from cowdetect.ssd_weights import graph_files, opencv_net  # noqa: E402




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--image", type=Path, default=ROOT.parent / "shared" / "real" / "000000420862.jpg")
    parser.add_argument("--train-steps", type=int, default=10)
    args = parser.parse_args()

    rgb = load_image(args.image) if args.image.is_file() else load_image(demo_image(0, "test", 0)[0])
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    with tempfile.TemporaryDirectory() as tmp:
        box = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", device="cpu", weights_dir=Path(tmp) / "w")
        net = opencv_net(*graph_files())

        def opencv() -> None:
            net.setInput(cv2.dnn.blobFromImage(bgr, size=(300, 300), swapRB=True))
            net.forward()

        rows = []
        for busy in (False, True):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            time.sleep(0.5)
            try:
                for threads in (2, 1):
                    torch.set_num_threads(threads)
                    ours, ref = interleaved(lambda: box.predict(rgb), opencv, args.repeats)
                    rows.append((busy, threads, ours, ref))
            finally:
                if hog:
                    hog.kill()
        torch.set_num_threads(2)

        store = Store(Path(tmp) / "data")
        make_demo(store, n_train=16, n_val=0, n_test=0, video=False)
        cfg = TrainConfig.for_architecture("ssd_mobilenet_v2_coco", iterations=args.train_steps)
        box.train(store.dataset("train"), config=TrainConfig.for_architecture("ssd_mobilenet_v2_coco", iterations=2))
        start = time.perf_counter()
        box.train(store.dataset("train"), config=cfg)
        steps = args.train_steps / (time.perf_counter() - start)

    print(f"image {args.image.name if args.image.is_file() else 'demo'} {rgb.shape[1]}x{rgb.shape[0]}, "
          f"torch {torch.__version__}, cv2 {cv2.__version__} ({cv2.getNumThreads()} threads), "
          f"median of {args.repeats}")
    print("| machine | torch threads | port, ms/image | cv2.dnn, ms/image | ratio |")
    print("|---|---|---|---|---|")
    for busy, threads, ours, ref in rows:
        state = "one core busy" if busy else "idle"
        print(f"| {state} | {threads} | {ours * 1000:.1f} | {ref * 1000:.1f} | {ours / ref:.2f}x |")
    print(f"fine-tuning: {steps:.2f} steps/s at batch {cfg.batch_size} (300 px, augmentation on), "
          f"{cfg.batch_size * steps:.1f} images/s")


if __name__ == "__main__":
    main()
