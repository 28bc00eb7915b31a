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


def tile_crop(image: Tensor, boxes: Tensor, labels: Tensor, side: float,
              tries: int = 5) -> tuple[Tensor, Tensor, Tensor] | None:
    """A random window of ``side`` to 2 x ``side`` pixels (a tile of sliced inference) holding a
    small cow whole, or None when no window can avoid cutting a cow.

    A cow cut by the window's edge would be taught as a cow (its centre inside) or as background
    (outside): both wrong, and sliced inference drops edge-cut boxes anyway; so such windows are
    refused. Boxes at least 70 % inside are kept, clipped.
    """
    height, width = image.shape[-2:]
    for _ in range(tries):
        crop = min(float(height), float(width), side * (1.0 + float(torch.rand(()))))
        small = torch.nonzero(torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) <= crop / 2)
        if not len(small):
            return None
        x_min, y_min, x_max, y_max = boxes[int(small[int(torch.randint(len(small), ()))])].tolist()
        x0 = int(max(0.0, min(width - crop, x_max - crop + (crop - (x_max - x_min)) * float(torch.rand(())))))
        y0 = int(max(0.0, min(height - crop, y_max - crop + (crop - (y_max - y_min)) * float(torch.rand(())))))
        window = torch.tensor([x0, y0, x0 + int(crop), y0 + int(crop)], dtype=boxes.dtype)
        clipped = torch.cat([torch.maximum(boxes[:, :2], window[:2]), torch.minimum(boxes[:, 2:], window[2:])], 1)
        visible = ((clipped[:, 2:] - clipped[:, :2]).clamp(min=0).prod(1) /
                   (boxes[:, 2:] - boxes[:, :2]).prod(1).clamp(min=1e-6))
        if ((visible > 0) & (visible < 0.7)).any():
            continue  # this window would cut a cow
        keep = visible >= 0.7
        return (image[:, y0:y0 + int(crop), x0:x0 + int(crop)], clipped[keep] - window[:2].repeat(2),
                labels[keep])
    return None


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
