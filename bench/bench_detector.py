"""DetectorBox overhead against raw torchvision, measured side by side in one run.

For a torchvision Faster R-CNN at its default size (MobileNetV3-320 by default), on demo
images (640x480); bench_ssd.py measures the SSD port against OpenCV instead:
  * predict: DetectorBox.predict(RGB array) vs. the torchvision model on the same tensor;
  * train:   DetectorBox.train iterations/s (which reads and decodes the JPEGs from disk,
             flips, schedules the learning rate, checks the loss) vs. a plain torchvision
             SGD step on the same already-decoded batch.
Runs are interleaved (A, B, A, B, ...) so drift in machine load hits both; medians are
printed with their ratio. Usage: python bench/bench_detector.py [--repeats N] [--iterations N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cowdetect import DetectorBox, TrainConfig  # noqa: E402
from cowdetect.demo import make_demo  # noqa: E402
from cowdetect.engine import to_tensor  # noqa: E402
from cowdetect.images import load_image  # noqa: E402
from cowdetect.store import Store  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--iterations", type=int, default=10, help="training iterations per timed block")
    parser.add_argument("--architecture", default="fasterrcnn_mobilenet_v3_large_320_fpn",
                        help="a torchvision Faster R-CNN (the raw side calls torchvision directly)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        make_demo(store, n_train=8, n_val=0, n_test=0, video=False)
        dataset = store.dataset("train")
        torch.manual_seed(0)
        box = DetectorBox(args.architecture, weights=None, device="auto")
        model, device = box.model, box.device
        rgb = load_image(dataset[0].image)
        tensor = to_tensor(rgb, device)

        def raw_predict() -> None:
            with torch.inference_mode():
                model.eval()
                model([tensor])

        for _ in range(3):  # warm-up
            box.predict(rgb)
            raw_predict()
        ours, raw = [], []
        for _ in range(args.repeats):
            ours.append(timed(lambda: box.predict(rgb)))
            raw.append(timed(raw_predict))
        p_ours, p_raw = statistics.median(ours), statistics.median(raw)

        # Training: the same two images every step for the plain loop, the dataset for ours.
        batch = [dataset[i] for i in range(2)]
        images = [to_tensor(load_image(s.image), device) for s in batch]
        targets = [{"boxes": torch.from_numpy(s.boxes.xyxy).to(device),
                    "labels": torch.from_numpy(s.boxes.class_id).to(device)} for s in batch]
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.001, momentum=0.9)

        def raw_train() -> None:
            model.train()
            for _ in range(args.iterations):
                loss = sum(model(images, targets).values())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

        cfg = TrainConfig(iterations=args.iterations, batch_size=2, learning_rate=0.001, warmup_iterations=0,
                          lr_steps=(), horizontal_flip=False)
        raw_train()
        box.train(dataset, config=cfg)
        t_ours, t_raw = [], []
        for _ in range(max(3, args.repeats // 5)):
            t_ours.append(timed(lambda: box.train(dataset, config=cfg)))
            t_raw.append(timed(raw_train))
        it_ours = args.iterations / statistics.median(t_ours)
        it_raw = args.iterations / statistics.median(t_raw)

    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {torch.get_num_threads()} threads, device {device}, torch {torch.__version__}")
    print(f"model: {box.architecture} (default size), demo images 640x480, batch 2 for training")
    print("| measure | DetectorBox | raw torchvision | ratio |")
    print("|---|---|---|---|")
    print(f"| predict, s/image (median of {args.repeats}) | {p_ours:.3f} | {p_raw:.3f} | {p_ours / p_raw:.2f}x |")
    print(f"| train, iterations/s (median of {len(t_ours)} x {args.iterations}) | {it_ours:.2f} | {it_raw:.2f} "
          f"| {it_raw / it_ours:.2f}x time |")


if __name__ == "__main__":
    main()
