"""Export a detector for edge devices: one ONNX file that takes an RGB uint8 image of any size
and gives xyxy pixel boxes, scores and class ids. torch.onnx and onnx live here; running an
exported file is :mod:`cowdetect.onnx_model` (onnxruntime).

What is inside the graph, and why: everything between the camera's pixels and the boxes —
uint8 → float, the model's own resize and normalisation (SSD: bilinear to 300x300, [-1, 1];
Faster R-CNN: torchvision's resize to ``min_size``/``max_size`` and ImageNet mean/std), the
network, box decoding, score threshold, NMS and the scaling back to input pixels. An edge
device then needs only an ONNX runtime and an image: no pre- or post-processing code to get
subtly wrong (a different resize kernel, BGR for RGB, normalised for pixel boxes), and the
parity test checks the one file against PyTorch end to end. Outside stays only what belongs to
the application: decoding the camera's frames and choosing a display threshold above the
model's own floor.

Exporter: the TorchScript-based ``torch.onnx.export(dynamo=False)``. The default dynamo exporter
of torch 2.14 refuses both architectures (torch.export cannot guard on the data-dependent box
count inside torchvision's ``batched_nms``), while the TorchScript one exports torchvision's
detection models as torchvision's own ONNX tests do, needs no ``onnxscript``, and gives boxes
within 0.002 px of PyTorch (tests/test_export.py).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from .files import atomic_write_bytes
from .ssd import SSDMobileNetV2

# format name -> the file suffix it is written with
EXPORT_FORMATS: dict[str, str] = {"onnx": ".onnx"}
ONNX_FORMAT = "cowdetect-onnx"
ONNX_VERSION = 1
# Opset 17 (2022): what onnxruntime releases of the last years and most edge runtimes run.
OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "labels")


def check_format(fmt: str) -> str:
    """``fmt`` when it is an export format this version writes, else ValueError listing them."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    return fmt


class ExportGraph(nn.Module):
    """What is exported: RGB uint8 (H, W, 3) → (boxes xyxy px float32 (N, 4), scores float32 (N,),
    labels int64 (N,)), around a detector's own module (SSD or a torchvision Faster R-CNN)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image.permute(2, 0, 1).float() / 255.0  # as engine.to_tensor, which predict uses
        if not isinstance(self.model, SSDMobileNetV2):
            out = self.model([x])[0]  # torchvision traces its own sizes as graph values
            return out["boxes"], out["scores"], out["labels"]
        # SSD scales boxes with torch.tensor([w, h, w, h]) of Python ints, which a trace would
        # freeze to the example's size: ask it for boxes of a 1x1 image and scale by the traced shape
        logits, codes = self.model.head_outputs(self.model.preprocess([x]))
        out = self.model.postprocess(logits, codes, [(1, 1)])[0]
        hw = torch._shape_as_tensor(image)[:2].to(out["boxes"].dtype)
        return out["boxes"] * torch.stack([hw[1], hw[0], hw[1], hw[0]]), out["scores"], out["labels"]


def onnx_metadata(box: Any, source: str | None = None) -> dict[str, str]:
    """What the file says about itself (ONNX ``metadata_props``, all strings): class names,
    input, box format, colour order, architecture, score threshold — enough to use it without cowdetect."""
    return {
        "format": ONNX_FORMAT, "format_version": str(ONNX_VERSION),
        "architecture": box.architecture,
        # labels index this list; 0 is the background, never output
        "class_names": json.dumps(list(box.class_names)),
        "input": f"{INPUT_NAME}: uint8 (height, width, 3), RGB, any size",
        "input_size": str(box.input_size),
        "outputs": "boxes: float32 (N, 4); scores: float32 (N,), best first; labels: int64 (N,) into class_names",
        "box_format": "xyxy pixels of the input image",
        "colour_order": "RGB",
        "score_threshold": repr(float(box.config.score_threshold)),
        "max_detections": str(box.config.max_detections),
        # the graph already scores its first name as the chance of any of these (cowdetect.ssd)
        "score_group": json.dumps(list(box.config.score_group)),
        "source": source or getattr(box, "origin", box.architecture),
    }


def _example_image() -> torch.Tensor:
    """A fixed, textured 320x240 RGB image to trace with (the graph works at any size)."""
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))


def onnx_bytes(box: Any, source: str | None = None) -> bytes:
    """``box`` (a :class:`~cowdetect.detector.DetectorBox`) as an ONNX model, self-described by
    :func:`onnx_metadata`. Input ``image``: RGB uint8 (H, W, 3), any size; outputs ``boxes``
    (xyxy pixels of that image), ``scores``, ``labels``. The box itself is not changed (a copy is
    exported on the CPU), so a cached, shared detector can be exported."""
    if getattr(box, "onnx_path", None) is not None:
        raise ValueError(f"model: {box.onnx_path} is already an ONNX export; copy the file instead")
    graph = ExportGraph(copy.deepcopy(box.model).cpu().eval())
    buffer = io.BytesIO()
    dynamic = {INPUT_NAME: {0: "height", 1: "width"}, **{name: {0: "detections"} for name in OUTPUT_NAMES}}
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice and the tracer's notes on shapes it may freeze are
        # for whoever maintains this function (the parity test checks the result), not for the user
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (_example_image(),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in onnx_metadata(box, source).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "cowdetect detector: image uint8 (H, W, 3) RGB -> boxes xyxy px, scores, labels"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def export_model(box: Any, out: str | Path, fmt: str = "onnx", source: str | None = None) -> Path:
    """Write ``box`` to ``out`` in ``fmt`` (only 'onnx', see :func:`onnx_bytes`), atomically.

    Raises:
        ValueError: an unknown format, an ``out`` without the format's suffix, or a box that
            is already an ONNX export.
    """
    suffix = EXPORT_FORMATS[check_format(fmt)]
    out = Path(out)
    if out.suffix.lower() != suffix:
        raise ValueError(f"out: expected a file ending in {suffix}, got {out}")
    return atomic_write_bytes(out, onnx_bytes(box, source))
