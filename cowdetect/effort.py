"""Labeling effort: how a person's saved boxes differ from the suggestions they started from.

Suggested and saved boxes are paired one-to-one by the assignment that maximises total IoU
(Hungarian, ``scipy.optimize.linear_sum_assignment``), pairs below :data:`PAIR_IOU` not
counted as pairs. Then each suggestion was kept **unchanged** (same class, every corner within
:data:`UNCHANGED_PX` pixels: the canvas rounds to 0.01 px, so this is "not touched"),
**changed** (moved, resized or relabelled), or **deleted**; a saved box without a pair was
**added** by hand. A model that saves work has many unchanged, few deleted and few added.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

# Below this IoU a saved box is not the suggestion edited but a different cow drawn anew.
PAIR_IOU = 0.3
UNCHANGED_PX = 0.5


@dataclass(frozen=True)
class Effort:
    """Counts for one image (or summed over many)."""

    suggested: int = 0
    unchanged: int = 0
    changed: int = 0
    deleted: int = 0
    added: int = 0

    def __add__(self, other: Effort) -> Effort:
        return Effort(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in ``a`` (N, 4) with every one in ``b`` (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def compare(suggested: np.ndarray, suggested_names: Sequence[str], saved: np.ndarray,
            saved_names: Sequence[str]) -> Effort:
    """The effort of turning ``suggested`` boxes into ``saved`` ones (both xyxy px, (N, 4))."""
    from scipy.optimize import linear_sum_assignment

    suggested = np.asarray(suggested, np.float64).reshape(-1, 4)
    saved = np.asarray(saved, np.float64).reshape(-1, 4)
    if len(suggested) != len(suggested_names) or len(saved) != len(saved_names):
        raise ValueError("compare: one class name per box expected")
    pairs: list[tuple[int, int]] = []
    if len(suggested) and len(saved):
        iou = _iou_matrix(suggested, saved)
        rows, cols = linear_sum_assignment(-iou)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= PAIR_IOU]
    unchanged = sum(1 for r, c in pairs if suggested_names[r] == saved_names[c]
                    and np.all(np.abs(suggested[r] - saved[c]) <= UNCHANGED_PX))
    return Effort(suggested=len(suggested), unchanged=unchanged, changed=len(pairs) - unchanged,
                  deleted=len(suggested) - len(pairs), added=len(saved) - len(pairs))
