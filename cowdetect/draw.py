"""Drawing boxes, labels, track ids and counting lines / zones on RGB arrays (torchvision for still
images, OpenCV for video)."""

from __future__ import annotations

import colorsys
import functools
from typing import Any, Sequence

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


def id_color(track_id: int) -> tuple[int, int, int]:
    """A stable RGB colour per track id (golden-ratio hue steps keep neighbouring ids apart)."""
    return class_color(track_id)


def draw_tracks(rgb: np.ndarray, boxes: np.ndarray, ids: Sequence[int],
                trails: Sequence[Sequence[tuple[float, float]]] | None = None, scale: float = 1.0) -> np.ndarray:
    """Draw tracked boxes in place on ``rgb`` (H, W, 3 uint8, RGB) and return it.

    ``boxes``: (N, 4) xyxy pixels of the *source* frame; ``scale`` maps them onto ``rgb``
    (when the frame was resized for output). Each id gets its own colour, a "#id" label and,
    when ``trails`` is given, a polyline through its recent box centres (source pixels).
    OpenCV draws here: it is ~20x faster than tensor drawing, which matters at 25 fps.
    """
    import cv2

    h, w = rgb.shape[:2]
    thickness, font_scale = line_style(h, w)
    for n, (box, track_id) in enumerate(zip(np.asarray(boxes, np.float64).reshape(-1, 4), ids)):
        color = id_color(int(track_id))
        if trails is not None and len(trails[n]) > 1:
            points = (np.asarray(trails[n], np.float64) * scale).round().astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(rgb, [points], False, color, max(1, thickness - 1), cv2.LINE_AA)
        x1, y1, x2, y2 = (np.clip(box * scale, 0, [w - 1, h - 1, w - 1, h - 1])).round().astype(int)
        cv2.rectangle(rgb, (x1, y1), (x2, y2), color, thickness)
        label(rgb, f"#{int(track_id)}", (x1, y1), (0, 0, 0), font_scale, box_color=color)
    return rgb


def line_style(h: int, w: int) -> tuple[int, float]:
    """(line thickness px, OpenCV font scale) for drawing on an ``h`` × ``w`` frame: readable at any size."""
    return max(2, round(max(h, w) / 400)), max(0.45, max(h, w) / 1400)


def label(rgb: np.ndarray, text: str, org: tuple[int, int], color: tuple[int, int, int], font_scale: float,
          box_color: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Draw ``text`` in ``color`` on a filled ``box_color`` box (RGB) in place on ``rgb`` (RGB uint8); ``org``
    (x, y px) is the box's bottom-left corner, moved inside the frame when it would leave it."""
    import cv2

    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    h, w = rgb.shape[:2]
    x = int(min(max(0, org[0]), max(0, w - tw - 4)))
    y = int(min(max(th + base + 2, org[1]), h - 1))
    cv2.rectangle(rgb, (x, y - th - base - 2), (x + tw + 4, y), box_color, -1)
    cv2.putText(rgb, text, (x + 2, y - base - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)


LINE_COLOR = (255, 64, 160)  # RGB: magenta stands out on grass and on cows' coats
ZONE_COLOR = (0, 200, 255)


def draw_counts(rgb: np.ndarray, lines: Sequence[tuple[Any, int, int]], zones: Sequence[tuple[Any, int]],
                scale: float = 1.0) -> np.ndarray:
    """Draw counting lines and zones in place on ``rgb`` (H, W, 3 uint8, RGB) and return it.

    ``lines``: (a :class:`cowdetect.geometry.Line`, forward count, backward count) each, drawn with an
    arrow from its middle pointing the forward way (towards its right-hand side, looking from its first
    point to its second); ``zones``: (a :class:`cowdetect.geometry.Zone`, tracks inside now). Shapes are
    in full-frame pixels; ``scale`` maps them onto ``rgb``."""
    import cv2

    h, w = rgb.shape[:2]
    thickness, font_scale = line_style(h, w)
    for zone, inside in zones:
        pts = (np.asarray(zone.points, np.float64) * scale).round().astype(np.int32)
        cv2.polylines(rgb, [pts.reshape(-1, 1, 2)], True, ZONE_COLOR, thickness, cv2.LINE_AA)
        top = pts[np.argmin(pts[:, 1])]
        label(rgb, f"{zone.name}: {inside} in", (int(top[0]), int(top[1]) - 4), ZONE_COLOR, font_scale)
    for line, forward, backward in lines:
        a, b = (np.asarray(p, np.float64) * scale for p in line.points)
        cv2.line(rgb, tuple(a.round().astype(int)), tuple(b.round().astype(int)), LINE_COLOR, thickness, cv2.LINE_AA)
        mid = (a + b) / 2
        normal = np.array([-(b - a)[1], (b - a)[0]]) / max(1e-9, float(np.hypot(*(b - a))))  # right-hand side
        tip = mid + normal * max(18.0, 0.06 * max(h, w))
        cv2.arrowedLine(rgb, tuple(mid.round().astype(int)), tuple(tip.round().astype(int)), LINE_COLOR, thickness,
                        cv2.LINE_AA, tipLength=0.35)
        label(rgb, f"{line.name}: {forward} fwd, {backward} back", (int(min(a[0], b[0])), int(min(a[1], b[1])) - 4),
              LINE_COLOR, font_scale)
    return rgb
