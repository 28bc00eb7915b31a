"""Drawing boxes and labels on RGB arrays (torchvision's draw_bounding_boxes does the work)."""

from __future__ import annotations

import colorsys
import functools

import numpy as np
import torch
from PIL import ImageFont
from torchvision.utils import draw_bounding_boxes

from .detections import Detections


@functools.lru_cache(maxsize=1)
def _font() -> str | None:
    """A TrueType font Pillow can find (scalable labels); None uses Pillow's small built-in one."""
    for name in ("DejaVuSans.ttf", "Arial.ttf", "LiberationSans-Regular.ttf"):
        try:
            ImageFont.truetype(name, 12)
            return name
        except OSError:
            continue
    return None


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour for a class id (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(rgb: np.ndarray, detections: Detections, color: tuple[int, int, int] | None = None,
                    width: int | None = None, show_scores: bool = True) -> np.ndarray:
    """Return a copy of ``rgb`` (H, W, 3 uint8, RGB) with each box (xyxy px) drawn and labeled
    "name score". Colour per class unless ``color`` is given."""
    if not len(detections):
        return rgb.copy()
    h, w = rgb.shape[:2]
    labels = []
    for _, name, score in detections:
        labels.append(f"{name} {score:.2f}" if show_scores and score is not None else name)
    colors = [color or class_color(int(c)) for c in detections.class_id]
    line = width or max(2, round(max(h, w) / 300))
    boxes = torch.from_numpy(detections.xyxy.copy())
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h - 1)
    image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    font = _font()
    drawn = draw_bounding_boxes(image, boxes, labels=labels, colors=colors, width=line, font=font,
                                font_size=max(10, round(max(h, w) / 45)) if font else None)
    return drawn.permute(1, 2, 0).numpy().copy()
