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


def tile_crop(image: Tensor, boxes: Tensor, labels: Tensor, side: float) -> tuple[Tensor, Tensor, Tensor]:
    """A random window of ``side`` to 2 x ``side`` pixels (a tile of sliced inference) around the
    centre of a random box; boxes whose centre lies inside are kept, clipped to it (SSD's rule)."""
    height, width = image.shape[-2:]
    crop = min(float(height), float(width), side * (1.0 + float(torch.rand(()))))
    cx, cy = ((boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)
    pick = int(torch.randint(len(boxes), ()))
    x0 = float(cx[pick]) - crop * float(torch.rand(()))
    y0 = float(cy[pick]) - crop * float(torch.rand(()))
    x0, y0 = int(min(max(0.0, x0), width - crop)), int(min(max(0.0, y0), height - crop))
    x1, y1 = x0 + int(crop), y0 + int(crop)
    inside = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
    kept = boxes[inside] - torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype)
    kept[:, 0::2] = kept[:, 0::2].clamp(0, x1 - x0)
    kept[:, 1::2] = kept[:, 1::2].clamp(0, y1 - y0)
    return image[:, y0:y1, x0:x1], kept, labels[inside]


class Augment:
    """Random flip / colour / scale / tile crop for one training sample; draws from torch's RNG.

    ``tile_side``: the side, in image pixels, of the tiles sliced inference shows the detector
    (its input size / :data:`cowdetect.tiling.MAGNIFICATION`); needed for ``tile_crops``.
    """

    def __init__(self, config: TrainConfig, tile_side: float | None = None) -> None:
        self.tile_crops, self.tile_side = config.tile_crops, tile_side
        self.flip = v2.RandomHorizontalFlip(0.5) if config.horizontal_flip else None
        self.colour = v2.RandomPhotometricDistort(p=0.5) if config.color_jitter else None
        # SSD's recipe: sometimes shrink the image onto a larger grey canvas (small cows),
        # sometimes crop a window that still overlaps the boxes (large cows).
        self.scale = v2.Compose([v2.RandomZoomOut(fill=0.5, side_range=(1.0, 2.0), p=0.3), v2.RandomIoUCrop(),
                                 v2.SanitizeBoundingBoxes(min_size=1)]) if config.scale_jitter else None

    def __call__(self, image: Tensor, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return the augmented (image, boxes xyxy px, labels); boxes that leave the image are dropped."""
        cropped = self._tile_crop(image, boxes, labels)
        scale = self.scale
        if cropped is not None:  # a tile crop already chose the scale
            image, boxes, labels = cropped
            scale = None
        canvas = (image.shape[-2], image.shape[-1])
        sample = (tv_tensors.Image(image),
                  {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=canvas), "labels": labels})
        for transform in (self.colour, self.flip):
            if transform is not None:
                sample = transform(*sample)
        if scale is not None and len(boxes) and bool(torch.rand(()) < 0.5):
            sample = scale(*sample)
        out_image, target = sample
        out = out_image.as_subclass(Tensor), target["boxes"].as_subclass(Tensor), target["labels"]
        return out

    def _tile_crop(self, image: Tensor, boxes: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        """A tile-sized crop with probability ``tile_crops`` (images large enough only), else None."""
        if not (self.tile_crops and self.tile_side and len(boxes)):
            return None
        if min(image.shape[-2:]) < 1.5 * self.tile_side or not bool(torch.rand(()) < self.tile_crops):
            return None
        return tile_crop(image, boxes, labels, self.tile_side)
