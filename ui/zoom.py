"""Zoom and pan for the labeling canvas, done on the server: the component cannot zoom, so the
canvas gets the part of the image in view (cropped and encoded at the canvas's size: a 4K frame
never travels whole to the browser) and boxes are converted between canvas px of that view and
original image px. No Streamlit here (tests/test_ui_editor.py).

A :class:`Viewport` maps ``canvas = (original - (x0, y0)) * scale`` with ``scale = fit * zoom``:
the canvas keeps its size at every zoom, zoom 1 shows the whole image.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cowdetect.images import load_image

from .canvas import canvas_size

ZOOMS = (1, 2, 4, 8, 16)  # times the fit scale; each Zoom in doubles
# Buttons that move the view: (label, shortcut, how) — Streamlit 1.67 takes letters, digits, F-keys
# and named keys, not '+' or '-'; C and R are reserved, S N P U G A are the page's other keys.
MOVES = (("Zoom in", "Z", "in"), ("Zoom out", "X", "out"), ("Fit", "F", "fit"),
         ("◀", "J", (-1, 0)), ("▲", "I", (0, -1)), ("▼", "K", (0, 1)), ("▶", "L", (1, 0)))


@dataclass(frozen=True)
class Viewport:
    """The part of a ``width`` x ``height`` image the canvas (``canvas_w`` x ``canvas_h`` px)
    shows: ``zoom`` times the ``fit`` scale, top-left corner (``x0``, ``y0``) in whole original
    px (whole, so the view's position can be read off exactly)."""

    width: int
    height: int
    canvas_w: int
    canvas_h: int
    fit: float
    zoom: int = 1
    x0: int = 0
    y0: int = 0

    @classmethod
    def fitting(cls, width: int, height: int) -> Viewport:
        """The whole image on a canvas of :func:`canvas_size`."""
        if width < 1 or height < 1:
            raise ValueError(f"width, height: expected positive image sizes, got {width}x{height}")
        canvas_w, canvas_h, fit = canvas_size(width, height)
        return cls(width, height, canvas_w, canvas_h, fit)

    def for_image(self, width: int, height: int) -> Viewport:
        """This view for another image of the same size (frames of one video), else fit."""
        return self if (width, height) == (self.width, self.height) else Viewport.fitting(width, height)

    @property
    def scale(self) -> float:
        """Canvas px per original px."""
        return self.fit * self.zoom

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The view as xyxy original px."""
        return self.x0, self.y0, self.x0 + self.canvas_w / self.scale, self.y0 + self.canvas_h / self.scale

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def centered(self, cx: float, cy: float, zoom: int | None = None) -> Viewport:
        """The view at ``zoom`` (default: this one) centred as near (cx, cy) as the image allows."""
        zoom = self.zoom if zoom is None else zoom
        if zoom not in ZOOMS:
            raise ValueError(f"zoom: expected one of {ZOOMS}, got {zoom!r}")
        scale = self.fit * zoom
        span_w, span_h = self.canvas_w / scale, self.canvas_h / scale
        x0 = max(0, min(round(cx - span_w / 2), math.floor(self.width - span_w)))
        y0 = max(0, min(round(cy - span_h / 2), math.floor(self.height - span_h)))
        return replace(self, zoom=zoom, x0=x0, y0=y0)

    def moved(self, how: str | tuple[int, int]) -> Viewport:
        """'in' / 'out' (next zoom step about the centre), 'fit', or (dx, dy): pan by half a view."""
        if how == "fit":
            return replace(self, zoom=1, x0=0, y0=0)
        if how in ("in", "out"):
            step = ZOOMS.index(self.zoom) + (1 if how == "in" else -1)
            return self.centered(*self.center, ZOOMS[min(max(step, 0), len(ZOOMS) - 1)])
        x0, y0, x1, y1 = self.box
        cx, cy = self.center
        return self.centered(cx + how[0] * (x1 - x0) / 2, cy + how[1] * (y1 - y0) / 2)

    def shows(self, xyxy: list[float]) -> bool:
        """The box overlaps the view (by a positive area)."""
        x0, y0, x1, y1 = self.box
        return min(xyxy[2], x1) > max(xyxy[0], x0) and min(xyxy[3], y1) > max(xyxy[1], y0)

    def to_canvas(self, xyxy: list[float]) -> dict[str, float]:
        """A box (xyxy original px) as {left, top, width, height} canvas px, unclipped."""
        s = self.scale
        return {"left": (xyxy[0] - self.x0) * s, "top": (xyxy[1] - self.y0) * s,
                "width": (xyxy[2] - xyxy[0]) * s, "height": (xyxy[3] - xyxy[1]) * s}

    def to_image(self, rect: dict[str, float]) -> list[float] | None:
        """A canvas box ({left, top, width, height} canvas px) as xyxy original px, clipped to the
        image (not to the view) and rounded to 0.01; None when under 1 px is left of it."""
        s = self.scale
        x1, y1 = rect["left"] / s + self.x0, rect["top"] / s + self.y0
        x2, y2 = x1 + rect["width"] / s, y1 + rect["height"] / s
        x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(self.width), x2), min(float(self.height), y2)
        if x2 - x1 < 0.99 or y2 - y1 < 0.99:  # 0.99: a stored 1 px box survives the canvas's float rounding
            return None
        return [round(v, 2) for v in (x1, y1, x2, y2)]

    def describe(self) -> str:
        """'zoom 4× · x 960–1920, y 540–1080 px' (the view in original px)."""
        x0, y0, x1, y1 = self.box
        return f"zoom {self.zoom}× · x {x0}–{x1:.0f}, y {y0}–{y1:.0f} px"


@functools.lru_cache(maxsize=4)
def _decoded(path: str) -> Image.Image:
    # Stored image files are named by their content hash: a path never changes content.
    return Image.fromarray(load_image(path))


def view_image(path: Path | str, view: Viewport) -> bytes:
    """The part of the image in view, resampled to the canvas size, as JPEG bytes."""
    image = _decoded(str(path))
    x0, y0, x1, y1 = view.box  # at fit the rounded canvas size may reach a fraction of a px past the edge
    crop = image.resize((view.canvas_w, view.canvas_h), Image.Resampling.BILINEAR,
                        box=(x0, y0, min(x1, view.width), min(y1, view.height)))
    buffer = io.BytesIO()
    crop.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def overview(thumb: np.ndarray, view: Viewport) -> np.ndarray:
    """A thumbnail of the whole image (RGB) with the view drawn on it as a rectangle."""
    image = Image.fromarray(thumb)
    f = image.width / view.width
    ImageDraw.Draw(image).rectangle([round(v * f) for v in view.box], outline=(0, 229, 255), width=2)
    return np.asarray(image)
