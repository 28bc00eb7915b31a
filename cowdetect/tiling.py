"""Sliced (tiled) inference: find small, distant cows by showing the detector overlapping tiles.

A detector sees an image at its input size (SSD: 300x300), so a 12 px cow in a 640 px photo
shrinks to 6 px, below its smallest anchors (about a tenth of the input side). Here the image
is also cut into overlapping tiles, each shown at the input size (magnified), and the boxes
of the whole image and of every tile are merged back in image pixels.

Why our own and not the ``sahi`` library: sahi 0.12 needs ``opencv-python>=4.12`` (numpy 2,
while norfair pins the stack to numpy 1.26) and the GUI OpenCV wheel beside our headless one;
what it would do here is a grid and an NMS, and torchvision's ``batched_nms`` does the NMS.

Boxes are xyxy pixels of the whole image; images are RGB uint8 arrays (H, W, 3).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import numpy as np

from .detections import Detections

TILES_HELP = "auto (tiles when the image is large for the model's input), off, or ROWSxCOLS such as 3x3"
# Each tile is shown to the detector at this magnification, so that a cow half the size of the
# smallest anchor is found: SSD's smallest anchors are ~0.1 of the input side.
MAGNIFICATION = 2.0
# Neighbouring tiles overlap by this fraction of a tile, so a cow smaller than that lies whole
# in one of them even where a tile edge cuts it.
OVERLAP = 0.25
# At most this many tiles (a 4K frame would otherwise want hundreds): past it, tiles grow.
MAX_TILES = 36
# Tiles of at least this many pixels a side (smaller ones magnify noise, not cows).
MIN_TILE = 32
Window = tuple[int, int, int, int]
# Changes whenever the grid or the merge rules change: kept detections of tiled runs are keyed by
# it, so a cache made by other rules is never read.
TILING_VERSION = f"2:{MAGNIFICATION}:{OVERLAP}:{MAX_TILES}:{MIN_TILE}"


def parse_tiles(spec: object) -> str | tuple[int, int]:
    """'auto', 'off', or (rows, cols) from a setting such as '3x3' (also None → 'off').

    Raises:
        ValueError: anything else, or a grid with 0 or more than 16 rows or columns.
    """
    if spec is None or spec == "off":
        return "off"
    if spec == "auto":
        return "auto"
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        spec = f"{spec[0]}x{spec[1]}"
    match = re.fullmatch(r"\s*(\d{1,3})\s*[xX×]\s*(\d{1,3})\s*", spec) if isinstance(spec, str) else None
    if match is None:
        raise ValueError(f"tiles: expected {TILES_HELP}; got {spec!r}")
    rows, cols = int(match[1]), int(match[2])
    if not (1 <= rows <= 16 and 1 <= cols <= 16):
        raise ValueError(f"tiles: expected 1 to 16 rows and columns, got {rows}x{cols}")
    return rows, cols


def tiles_text(spec: object) -> str:
    """A tiles setting checked and written one way — 'off', 'auto' or 'RxC' — as settings store it."""
    parsed = parse_tiles(spec)
    return parsed if isinstance(parsed, str) else f"{parsed[0]}x{parsed[1]}"


def tiled_label(label: str, tiles: str) -> str:
    """How a model's results with this tiling ('off', 'auto', 'RxC') are named: tiled and untiled
    results of one model are stored and cached apart."""
    return label if tiles == "off" else f"{label} · tiles {tiles}"


def auto_grid(width: int, height: int, input_size: int) -> tuple[int, int] | None:
    """The grid 'auto' uses for a ``width`` x ``height`` image and a detector whose input side is
    ``input_size``: tiles of input_size / MAGNIFICATION px (grown to keep at most MAX_TILES),
    or None when the image is too small for tiles to magnify anything."""
    side = input_size / MAGNIFICATION
    if min(width, height) < 1.5 * side:
        return None
    while True:
        rows, cols = max(1, round(height / side)), max(1, round(width / side))
        if rows * cols <= MAX_TILES:
            return (rows, cols) if rows * cols > 1 else None
        side *= 1.1


def tile_windows(width: int, height: int, rows: int, cols: int, overlap: float = OVERLAP) -> list[Window]:
    """Overlapping windows (x0, y0, x1, y1) in pixels covering the image in ``rows`` x ``cols``.

    Raises:
        ValueError: tiles smaller than MIN_TILE pixels (too many for the image, or a tiny image).
    """
    tile_w = width / (cols - (cols - 1) * overlap) if cols > 1 else width
    tile_h = height / (rows - (rows - 1) * overlap) if rows > 1 else height
    if min(tile_w, tile_h) < MIN_TILE:
        raise ValueError(f"tiles: {rows}x{cols} tiles of a {width}x{height} image would be "
                         f"{tile_w:.0f}x{tile_h:.0f} px; expected at least {MIN_TILE} px a side (fewer tiles)")
    windows = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = round(c * tile_w * (1 - overlap)), round(r * tile_h * (1 - overlap))
            windows.append((x0, y0, min(width, round(x0 + tile_w)), min(height, round(y0 + tile_h))))
    return windows


def check_grid(spec: str | tuple[int, int], width: int, height: int) -> None:
    """Raise ValueError when a fixed grid cannot tile a ``width`` x ``height`` image (tiles under
    MIN_TILE px); 'auto' and 'off' fit every image."""
    if isinstance(spec, tuple):
        tile_windows(width, height, *spec)


def grid_for(spec: str | tuple[int, int], width: int, height: int, input_size: int) -> tuple[int, int] | None:
    """The grid to use for one image (None: the whole image only)."""
    if spec == "off":
        return None
    if spec == "auto":
        return auto_grid(width, height, input_size)
    return spec  # type: ignore[return-value]


def detect_tiled(detect: Callable[[list[np.ndarray]], list[Detections]], rgb: np.ndarray,
                 grid: tuple[int, int] | None, iou: float = 0.5, limit: int = 100) -> Detections:
    """Detections on the whole image and on each tile of ``grid`` (one batched ``detect`` call),
    merged into xyxy pixels of the whole image (at most ``limit``, best first). ``detect`` maps
    RGB arrays to Detections."""
    height, width = rgb.shape[:2]
    windows = tile_windows(width, height, *grid) if grid is not None else []
    crops = [rgb] + [rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    found = detect(crops)
    if not windows:
        return found[0]
    return merge(found[0], [_from_tile(d, w, width, height) for d, w in zip(found[1:], windows)], iou, limit)


def _from_tile(dets: Detections, window: Window, width: int, height: int) -> tuple[Detections, np.ndarray]:
    """A tile's boxes moved into whole-image pixels, and which of them an inner tile edge cuts."""
    x0, y0, x1, y1 = window
    xyxy = dets.xyxy + np.array([x0, y0, x0, y0], np.float32)
    margin = 0.02 * min(x1 - x0, y1 - y0)
    cut = np.zeros(len(xyxy), bool)
    for axis, low, high, limit in ((0, x0, x1, width), (1, y0, y1, height)):
        if low > 0:
            cut |= xyxy[:, axis] <= low + margin
        if high < limit:
            cut |= xyxy[:, axis + 2] >= high - margin
    return Detections(xyxy, dets.class_id, dets.score, dets.class_names), cut


def _ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection of each box of ``a`` with each of ``b``, over the area of the ``a`` box: (len(a), len(b))."""
    w = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    h = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    area = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])).clip(1e-6)
    return w * h / area[:, None]


def _stitch(xyxy: np.ndarray, cls: np.ndarray, score: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Cut boxes from neighbouring tiles that overlap (a cow wider than the overlap, on a seam) become
    one box, their union with the better score; returns the rows kept (``xyxy`` is widened in place)."""
    order, used, kept = np.argsort(-score), set(), []
    ios = _ios(xyxy, xyxy)
    overlap = np.minimum(ios, ios.T)
    for i in order:
        if i in used:
            continue
        used.add(i)
        partners = [j for j in order if j not in used and cls[j] == cls[i] and part[j] != part[i]
                    and overlap[i, j] >= 0.25]
        if partners:
            j = partners[0]
            used.add(j)
            xyxy[i] = [min(xyxy[i, 0], xyxy[j, 0]), min(xyxy[i, 1], xyxy[j, 1]),
                       max(xyxy[i, 2], xyxy[j, 2]), max(xyxy[i, 3], xyxy[j, 3])]
        kept.append(i)
    return np.array(kept, np.int64)


def merge(whole: Detections, tiles: Sequence[tuple[Detections, np.ndarray]], iou: float = 0.5,
          limit: int = 100) -> Detections:
    """One set of boxes from the whole image and its tiles ((detections, cut mask) each):

    1. a tile box cut by an inner tile edge counts only where no whole box covers it; cut boxes
       of neighbouring tiles on one seam are stitched into one (a cow wider than the overlap);
    2. class-wise NMS at ``iou`` (torchvision's ``batched_nms``);
    3. a tile box lying mostly inside a better box *from another pass* is dropped (a tile that saw
       a cow's head as a cow) — boxes of one pass never suppress each other this way, so a calf
       in front of its mother, found by the same pass, stays;
    4. the best ``limit`` boxes.
    """
    names = whole.class_names
    parts = [(whole, np.zeros(len(whole), bool))] + list(tiles)
    xyxy = np.concatenate([d.xyxy for d, _ in parts]).reshape(-1, 4).astype(np.float32)
    cls = np.concatenate([d.class_id for d, _ in parts])
    score = np.concatenate([d.score if d.score is not None else np.ones(len(d), np.float32) for d, _ in parts])
    part = np.concatenate([np.full(len(d), k) for k, (d, _) in enumerate(parts)])
    cut = np.concatenate([c for _, c in parts])
    if not len(xyxy):
        return Detections.empty(names, scored=True)
    whole_ok = ~cut
    covered = (_ios(xyxy[cut], xyxy[whole_ok]) * (cls[cut][:, None] == cls[whole_ok][None, :])).max(1, initial=0)
    seam = np.flatnonzero(cut)[covered < 0.5]
    if len(seam):
        boxes = xyxy[seam]  # a copy: _stitch widens stitched boxes in it
        kept = _stitch(boxes, cls[seam], score[seam], part[seam])
        xyxy[seam[kept]] = boxes[kept]
        seam = seam[kept]
    rows = np.concatenate([np.flatnonzero(whole_ok), seam])
    xyxy, cls, score, part = xyxy[rows], cls[rows], score[rows], part[rows]
    import torch  # here, not at the top: the CLI reads this module's grammar without loading torch
    from torchvision.ops import batched_nms

    keep = batched_nms(torch.from_numpy(xyxy), torch.from_numpy(score), torch.from_numpy(cls), iou).numpy()
    keep = keep[:limit * 3]  # nothing past these can make the best `limit`
    ios = _ios(xyxy[keep], xyxy[keep])
    better = np.tril(np.ones((len(keep), len(keep)), bool), -1)  # j before i: a better score
    other = (cls[keep][:, None] == cls[keep][None, :]) & (part[keep][:, None] != part[keep][None, :])
    nested = (part[keep] > 0) & ((ios >= 0.85) & better & other).any(1)
    keep = keep[~nested][:limit]
    return Detections(xyxy[keep], cls[keep], score[keep], names)
