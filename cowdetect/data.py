"""Labeled data as :meth:`DetectorBox.train` and :meth:`DetectorBox.evaluate` take it.

A :class:`LabeledDataset` is a list of :class:`Sample` (an image source plus its
ground-truth boxes, xyxy pixels) and the dataset's class names. It comes from the store
(:meth:`cowdetect.store.Store.dataset`) or is built in memory with :meth:`from_lists`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .detections import BACKGROUND, Detections
from .images import ImageSource, check_image_size, load_image


@dataclass(frozen=True)
class Sample:
    """One labeled image: ``boxes`` are xyxy pixels in ``image``'s own pixel grid; ``size`` is its
    (width, height) px when known without decoding it (the store's record), else None."""

    image: ImageSource
    boxes: Detections
    image_id: int | str
    size: tuple[int, int] | None = None

    def load(self) -> np.ndarray:
        """The image as RGB uint8 (H, W, 3), after checking that the detectors can use it (see
        :func:`check_usable`) and that every box lies inside it."""
        rgb = load_image(self.image, name=str(self.image_id))
        check_usable(rgb.shape[1], rgb.shape[0], self.image_id)
        check_boxes_inside(self.boxes.xyxy, rgb.shape[1], rgb.shape[0], f"image {self.image_id}")
        return rgb


def check_usable(width: int, height: int, image_id: int | str) -> None:
    """ValueError, in one line, for an image too small or too thin to train on (imports refuse such
    images, but a database from before that check may hold some; torchvision would fail on them
    with a ZeroDivisionError deep inside RandomIoUCrop, or a zero-sized resize)."""
    try:
        check_image_size(width, height, str(image_id))
    except ValueError as exc:
        raise ValueError(f"{exc}; remove it from the data (delete it, or move it to 'unassigned')") from None


def check_boxes_inside(xyxy: np.ndarray, width: int, height: int, where: str) -> None:
    """ValueError when a box (xyxy px) leaves the image; half a pixel of rounding is allowed."""
    if not len(xyxy):
        return
    tol = 0.5
    outside = (xyxy[:, 0] < -tol) | (xyxy[:, 1] < -tol) | (xyxy[:, 2] > width + tol) | (xyxy[:, 3] > height + tol)
    if outside.any():
        box = [round(float(v), 1) for v in xyxy[np.flatnonzero(outside)[0]]]
        raise ValueError(f"{where}: box {box} lies outside the {width}x{height} image")


@dataclass(frozen=True)
class LabeledDataset(Sequence[Sample]):
    """Images with ground-truth boxes; ``classes`` are the foreground class names."""

    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    name: str = "dataset"

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples", tuple(self.samples))
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.classes or BACKGROUND in self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes: expected distinct foreground class names, got {list(self.classes)}")
        for sample in self.samples:
            if sample.boxes.class_names != self.class_names:
                raise ValueError(
                    f"image {sample.image_id}: its boxes use classes {list(sample.boxes.class_names[1:])}, "
                    f"the dataset {list(self.classes)}")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The vocabulary with the background at index 0."""
        return (BACKGROUND, *self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: Any) -> Any:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def num_boxes(self) -> int:
        """Total number of ground-truth boxes."""
        return sum(len(s.boxes) for s in self.samples)

    def require_nonempty(self, purpose: str) -> None:
        """ValueError when there is nothing to ``purpose`` (train / evaluate) on, or when an image
        whose size is known (:attr:`Sample.size`) cannot be used (:func:`check_usable`): a job
        refuses to start rather than fail when it reaches that image."""
        if not self.samples:
            raise ValueError(f"dataset {self.name!r}: no images to {purpose} on")
        if self.num_boxes == 0:
            raise ValueError(f"dataset {self.name!r}: {len(self)} images but no boxes to {purpose} on")
        for sample in self.samples:
            if sample.size is not None:
                check_usable(*sample.size, sample.image_id)

    @classmethod
    def from_lists(cls, images: Sequence[ImageSource], boxes: Sequence[Any], labels: Sequence[Sequence[str]],
                   classes: Sequence[str] = ("cow",), name: str = "dataset") -> LabeledDataset:
        """Build from parallel lists: images, per-image (N, 4) xyxy pixel boxes, per-image class names."""
        if not len(images) == len(boxes) == len(labels):
            raise ValueError(f"images, boxes and labels: expected equal lengths, got "
                             f"{len(images)}, {len(boxes)}, {len(labels)}")
        vocab = (BACKGROUND, *classes)
        samples = tuple(Sample(img, Detections.from_names(np.asarray(b, np.float32).reshape(-1, 4), list(lab), vocab), i)
                        for i, (img, b, lab) in enumerate(zip(images, boxes, labels)))
        return cls(samples, tuple(classes), name)
