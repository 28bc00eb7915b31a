"""The GPU path's speed: images/s for predict and iterations/s for training, SSD-MobileNetV2 and the
seed's Faster R-CNN ResNet-50 FPN, on CUDA with mixed precision, against detectron2's model zoo.

detectron2's R50-FPN 3x (faster_rcnn_R_50_FPN_3x): 0.209 s per training iteration on 8 V100s with
16 images per iteration (2 per GPU), and 0.038 s per image for inference (batch 1, one V100).
Here: one GPU, demo images of 640x480 (the R50-FPN resizes them to 800 on the short side, as
detectron2 does its COCO images), training at batch 16 on the one GPU and at batch 2 (detectron2's
per-GPU share), inference one image at a time and 8 at once. Each number is the median of timed
repeats after warm-up, with torch.cuda.synchronize() around each. Untrained weights where the COCO
weights are not cached (the speed is the same).

Usage: python bench/bench_gpu.py [--iterations 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from cowdetect import DetectorBox, Store, make_demo  # noqa: E402
from cowdetect.config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE  # noqa: E402
from cowdetect.models import coco_weights_available  # noqa: E402

DETECTRON2 = {"train_s_per_iteration_8gpu_16img": 0.209, "inference_s_per_image": 0.038}


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(architecture: str, store: Store, iterations: int) -> dict[str, float]:
    weights = "coco" if architecture == DEFAULT_ARCHITECTURE or coco_weights_available(architecture) else None
    box = DetectorBox(architecture, weights=weights, classes=("cow",), device="cuda")
    images = [s.load() for s in store.dataset("test").samples[:8]]
    one = timed(lambda: box.predict(images[0]), 20)
    eight = timed(lambda: box.predict(images), 10)
    out = {"predict_images_per_s_batch1": 1 / one, "predict_images_per_s_batch8": 8 / eight}
    for batch in (2, 16):
        started = time.perf_counter()
        history = box.train(store.dataset("train"), iterations=iterations, batch_size=batch)
        torch.cuda.synchronize()
        out[f"train_iterations_per_s_batch{batch}"] = len(history) / (time.perf_counter() - started)
    out["weights"] = weights or "untrained"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: this benchmark measures the GPU path")
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        make_demo(store, n_train=64, n_val=0, n_test=8, seed=1, video=False)
        for architecture in (DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE):
            result = measure(architecture, store, args.iterations)
            print(architecture, {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()},
                  flush=True)
    print(f"detectron2 R50-FPN 3x: {1 / DETECTRON2['inference_s_per_image']:.1f} images/s inference (V100), "
          f"{1 / DETECTRON2['train_s_per_iteration_8gpu_16img']:.2f} iterations/s of 16 images on 8 V100s")


if __name__ == "__main__":
    main()
