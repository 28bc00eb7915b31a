"""The one currency type for boxes: :class:`Detections`.

Boxes are always ``xyxy`` in image pixels (x_min, y_min, x_max, y_max), float32.
``class_id`` indexes ``class_names``; index 0 is the background, as in torchvision.
This module imports nothing from the package so every other module can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

BACKGROUND = "__background__"


def _as_array(value: Any, dtype: type, name: str, shape_hint: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected {shape_hint} numbers, got {type(value).__name__}") from exc


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes with class ids and (optional) scores, as parallel arrays.

    Attributes:
        xyxy: float32 array of shape (N, 4), pixels, x_min <= x_max and y_min <= y_max.
        class_id: int64 array of shape (N,), indices into ``class_names``.
        score: float32 array of shape (N,), or None for ground truth.
        class_names: the vocabulary: ``class_names[class_id]`` is a box's class name.
            Element 0 is the background.
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    score: np.ndarray | None = None
    class_names: tuple[str, ...] = field(default=(BACKGROUND, "cow"))

    def __post_init__(self) -> None:
        xyxy = _as_array(self.xyxy, np.float32, "xyxy", "an (N, 4) array of").reshape(-1, 4) \
            if np.size(self.xyxy) else np.zeros((0, 4), np.float32)
        class_id = _as_array(self.class_id, np.int64, "class_id", "an (N,) array of").reshape(-1)
        n = len(xyxy)
        if len(class_id) != n:
            raise ValueError(f"class_id: expected {n} entries (one per box), got {len(class_id)}")
        if not np.isfinite(xyxy).all():
            raise ValueError("xyxy: every coordinate must be a finite number, got NaN or infinity")
        bad = np.flatnonzero((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1]))
        if len(bad):
            raise ValueError(
                f"xyxy: expected x_min <= x_max and y_min <= y_max, box {int(bad[0])} is "
                f"{xyxy[bad[0]].tolist()}"
            )
        names = tuple(self.class_names)
        if n and (class_id.min() < 0 or class_id.max() >= len(names)):
            raise ValueError(
                f"class_id: expected values in 0..{len(names) - 1} (classes {list(names)}), "
                f"got {sorted(set(class_id.tolist()))}"
            )
        score = None
        if self.score is not None:
            score = _as_array(self.score, np.float32, "score", "an (N,) array of").reshape(-1)
            if len(score) != n:
                raise ValueError(f"score: expected {n} entries (one per box), got {len(score)}")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "class_id", class_id)
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "class_names", names)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def empty(cls, class_names: tuple[str, ...] = (BACKGROUND, "cow"), scored: bool = False) -> Detections:
        """No boxes; ``scored`` gives an empty score array (a prediction) instead of None."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                   np.zeros(0, np.float32) if scored else None, class_names)

    @classmethod
    def from_names(cls, xyxy: Any, names: list[str], class_names: tuple[str, ...],
                   score: Any = None) -> Detections:
        """Build from per-box class *names*; an unknown name raises ValueError listing the valid ones."""
        lookup = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({n for n in names if n not in lookup or n == BACKGROUND})
        if unknown:
            raise ValueError(f"class name: expected one of {list(class_names[1:])}, got {unknown}")
        return cls(xyxy, [lookup[n] for n in names], score, class_names)

    @classmethod
    def from_torchvision(cls, output: dict[str, Any], class_names: tuple[str, ...]) -> Detections:
        """Convert one torchvision detection output dict (``boxes``, ``labels``, ``scores``)."""
        def arr(key: str) -> np.ndarray | None:
            value = output.get(key)
            return None if value is None else value.detach().float().cpu().numpy() \
                if hasattr(value, "detach") else np.asarray(value)
        return cls(arr("boxes"), arr("labels"), arr("scores"), class_names)

    # -- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Select boxes with a boolean mask, an index array or a slice."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.class_id[index],
                          None if self.score is None else self.score[index], self.class_names)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str, float | None]]:
        for i in range(len(self)):
            yield self.xyxy[i], self.class_names[self.class_id[i]], \
                None if self.score is None else float(self.score[i])

    @property
    def names(self) -> list[str]:
        """Class name of each box."""
        return [self.class_names[i] for i in self.class_id]

    def above(self, threshold: float) -> Detections:
        """Keep boxes whose score is >= threshold (all boxes when unscored)."""
        return self if self.score is None else self[self.score >= threshold]

    def scaled(self, factor: float) -> Detections:
        """Boxes multiplied by ``factor`` (map boxes found on a resized image back to the original)."""
        return Detections(self.xyxy * np.float32(factor), self.class_id, self.score, self.class_names)

    def clipped(self, width: int, height: int, min_side: float = 1.0) -> Detections:
        """Boxes clipped to a ``width`` x ``height`` image, dropping those left thinner than
        ``min_side`` px (a model's box may reach past the edge; a cow's box cannot)."""
        xyxy = np.clip(self.xyxy, 0, np.array([width, height, width, height], np.float32)).astype(np.float32)
        keep = (xyxy[:, 2] - xyxy[:, 0] >= min_side) & (xyxy[:, 3] - xyxy[:, 1] >= min_side)
        return Detections(xyxy, self.class_id, self.score, self.class_names)[keep]

    def with_class_names(self, class_names: tuple[str, ...]) -> Detections:
        """Re-index onto another vocabulary by name, dropping classes it does not have."""
        lookup = {name: i for i, name in enumerate(class_names)}
        keep = np.array([n in lookup and n != BACKGROUND for n in self.names], dtype=bool)
        kept = self[keep] if len(self) else self
        ids = [lookup[n] for n in kept.names]
        return Detections(kept.xyxy, ids, kept.score, tuple(class_names))

    def to_detectron2(self) -> dict[str, list]:
        """The seed notebook's view: ``pred_classes``, ``class_names``, ``pred_boxes`` (xyxy px), ``scores``."""
        return {
            "pred_classes": self.class_id.tolist(),
            "class_names": self.names,
            "pred_boxes": [[round(float(v), 2) for v in box] for box in self.xyxy],
            "scores": [] if self.score is None else [round(float(s), 4) for s in self.score],
        }

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, classes={sorted(set(self.names))}, scored={self.score is not None})"
