"""The SSD-MobileNetV2 COCO detector exported to ONNX: onnxruntime against PyTorch on this CPU.

Prints, measured side by side in one run (interleaved, medians):
  * time per image, image → detections, DetectorBox.predict (PyTorch) vs. the same call on
    DetectorBox.load("ssd.onnx") (onnxruntime), at 1 and 2 threads (the same count for both),
    and the ratio;
  * how far the two agree on the demo images: boxes compared, largest box and score difference.
Usage: python bench/bench_onnx.py [--repeats N] [--images N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect import DetectorBox, export_model  # noqa: E402
from cowdetect.demo import demo_image  # noqa: E402
from cowdetect.images import load_image  # noqa: E402
from timing import interleaved  # noqa: E402
from cowdetect.onnx_model import OnnxDetectorBox  # noqa: E402




def agreement(torch_box: DetectorBox, onnx_box: DetectorBox, images: list[np.ndarray]) -> dict[str, float]:
    """Boxes compared (paired one to one by position and class), largest |Δ box| px and |Δ score|."""
    boxes, dbox, dscore = 0, 0.0, 0.0
    for rgb in images:
        r, g = torch_box.predict(rgb), onnx_box.predict(rgb)
        if len(r) != len(g):
            raise AssertionError(f"{len(r)} boxes from PyTorch, {len(g)} from onnxruntime")
        cost = np.abs(r.xyxy[:, None] - g.xyxy[None]).max(-1) + 1e6 * (r.class_id[:, None] != g.class_id[None])
        i, j = linear_sum_assignment(cost)
        boxes += len(i)
        dbox = max(dbox, float(cost[i, j].max(initial=0.0)))
        dscore = max(dscore, float(np.abs(r.score[i] - g.score[j]).max(initial=0.0)))
    return {"boxes": boxes, "box_px": dbox, "score": dscore}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--images", type=int, default=10, help="demo images for the agreement numbers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch_box = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", device="cpu", weights_dir=Path(tmp) / "w")
        started = time.perf_counter()
        path = export_model(torch_box, Path(tmp) / "ssd.onnx")
        export_s = time.perf_counter() - started
        photo = load_image(demo_image(0, "test", 1)[0])
        rows = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            onnx_box = OnnxDetectorBox(path, "cpu", threads=threads)
            t_torch, t_onnx = interleaved(lambda: torch_box.predict(photo), lambda: onnx_box.predict(photo),
                                          args.repeats)
            rows.append((threads, t_torch, t_onnx))
        images = [load_image(demo_image(0, "test", i)[0]) for i in range(args.images)]
        agree = agreement(torch_box, onnx_box, images)
        size_mb = path.stat().st_size / 1e6
    print(f"SSD-MobileNetV2 COCO, one 640x480 demo image per call, {args.repeats} interleaved runs, medians; "
          f"export took {export_s:.1f} s, file {size_mb:.1f} MB")
    print("| threads | PyTorch ms/image | onnxruntime ms/image | PyTorch / onnxruntime |")
    print("|---:|---:|---:|---:|")
    for threads, a, b in rows:
        print(f"| {threads} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f} |")
    print(f"\nAgreement on {args.images} demo images: {agree['boxes']} boxes paired one to one (same class), "
          f"largest box difference {agree['box_px']:.4f} px, largest score difference {agree['score']:.1e}")


if __name__ == "__main__":
    main()
