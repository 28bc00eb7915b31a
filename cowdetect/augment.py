"""Training-time augmentation of an image and its boxes (torchvision.transforms.v2 does the work).

Flip, colour (photometric distortion) and scale (SSD's zoom-out and IoU-constrained random
crop), each switched by :class:`cowdetect.config.TrainConfig`. Boxes are xyxy pixels;
images are float RGB tensors (3, H, W) in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from .config import TrainConfig


class Augment:
    """Random flip / colour / scale for one training sample; draws from torch's RNG."""

    def __init__(self, config: TrainConfig) -> None:
        self.flip = v2.RandomHorizontalFlip(0.5) if config.horizontal_flip else None
        self.colour = v2.RandomPhotometricDistort(p=0.5) if config.color_jitter else None
        # SSD's recipe: sometimes shrink the image onto a larger grey canvas (small cows),
        # sometimes crop a window that still overlaps the boxes (large cows).
        self.scale = v2.Compose([v2.RandomZoomOut(fill=0.5, side_range=(1.0, 2.0), p=0.3), v2.RandomIoUCrop(),
                                 v2.SanitizeBoundingBoxes(min_size=1)]) if config.scale_jitter else None

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return the augmented (image, boxes xyxy px, labels); boxes that leave the image are dropped."""
        canvas = (image.shape[-2], image.shape[-1])
        sample = (tv_tensors.Image(image),
                  {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas), "labels": labels})
        for transform in (self.colour, self.flip):
            if transform is not None:
                sample = transform(*sample)
        if self.scale is not None and len(boxes) and bool(torch.rand(()) < 0.5):
            sample = self.scale(*sample)
        out_image, target = sample
        return out_image.as_subclass(Tensor), target["boxes"].as_subclass(Tensor), target["labels"]
