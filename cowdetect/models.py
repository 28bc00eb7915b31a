"""Which detector architectures exist and how each is built. torchvision lives here.

Architectures are a plain dict, :data:`ARCHITECTURES`; :func:`get_architecture` names the
valid ones when asked for another. All current entries are torchvision Faster R-CNNs, so
they share one way of replacing the box predictor for a new class list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import detection as tvd
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from .detections import BACKGROUND
from .weights import WeightsUnavailableError, cache_path


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture: a torchvision builder and its COCO weights."""

    builder: Callable[..., nn.Module]
    coco_weights: Any  # a torchvision WeightsEnum member
    description: str


ARCHITECTURES: dict[str, Architecture] = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": Architecture(
        tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        "MobileNetV3 backbone at 320 px: fast on a CPU (the default)"),
    "fasterrcnn_mobilenet_v3_large_fpn": Architecture(
        tvd.fasterrcnn_mobilenet_v3_large_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        "MobileNetV3 backbone at 800 px: better on small cows, slower"),
    "fasterrcnn_resnet50_fpn": Architecture(
        tvd.fasterrcnn_resnet50_fpn,
        tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        "the seed notebook's ResNet-50 FPN: accurate, wants a GPU"),
    "fasterrcnn_resnet50_fpn_v2": Architecture(
        tvd.fasterrcnn_resnet50_fpn_v2,
        tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        "improved ResNet-50 FPN (torchvision v2 recipe): most accurate, slowest"),
}


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; ValueError lists the valid names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"architecture: expected one of {sorted(ARCHITECTURES)}, got {name!r}") from None


def coco_class_names(architecture: str) -> tuple[str, ...]:
    """The 91 COCO category names torchvision's weights predict (index 0 = background)."""
    names = list(get_architecture(architecture).coco_weights.meta["categories"])
    names[0] = BACKGROUND
    return tuple(names)


# Training samples 128 RoIs from 500 proposals per image instead of torchvision's 512 from
# 2000: a herd photo has a handful of cows, and this cuts a CPU training step from ~2.0 s
# to ~0.8 s (mobilenet 320, batch 2). The seed's detectron2 recipe used 128 as well.
# Inference settings are untouched.
TRAIN_SAMPLING = {"box_batch_size_per_image": 128, "rpn_pre_nms_top_n_train": 1000,
                  "rpn_post_nms_top_n_train": 500}


def _size_kwargs(min_size: int | None, max_size: int | None, score_threshold: float,
                 max_detections: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"box_score_thresh": score_threshold, "box_detections_per_img": max_detections,
                              **TRAIN_SAMPLING}
    if min_size is not None:
        kwargs["min_size"] = min_size
    if max_size is not None:
        kwargs["max_size"] = max_size
    return kwargs


def build_untrained(architecture: str, num_classes: int, min_size: int | None = None,
                    max_size: int | None = None, score_threshold: float = 0.05,
                    max_detections: int = 100) -> nn.Module:
    """A randomly initialised model with ``num_classes`` outputs (background included).

    Nothing is downloaded: no COCO weights and no ImageNet backbone.
    """
    arch = get_architecture(architecture)
    return arch.builder(weights=None, weights_backbone=None, num_classes=num_classes,
                        **_size_kwargs(min_size, max_size, score_threshold, max_detections))


def build_coco(architecture: str, min_size: int | None = None, max_size: int | None = None,
               score_threshold: float = 0.05, max_detections: int = 100) -> nn.Module:
    """The model with torchvision's COCO weights (91 classes), from torch's cache or a download.

    Raises:
        WeightsUnavailableError: offline and the weights file is not in torch's cache.
    """
    arch = get_architecture(architecture)
    weights = arch.coco_weights
    try:
        # torchvision reads torch's cache first and downloads only when the file is missing.
        return arch.builder(weights=weights, **_size_kwargs(min_size, max_size, score_threshold, max_detections))
    except (URLError, OSError) as exc:
        target = cache_path(weights.url)
        raise WeightsUnavailableError(
            f"Could not get the COCO weights for {architecture} ({exc}). Without internet, "
            f"download {weights.url} on a machine that has it and copy the file to {target} "
            f"(or point TORCH_HOME at a folder whose hub/checkpoints holds it)."
        ) from exc


def freeze_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by FrozenBatchNorm2d in place (the layout COCO weights use)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(model, name, frozen)
        else:
            freeze_batchnorm(child)
    return model


def has_frozen_batchnorm(model: nn.Module) -> bool:
    """True when the model uses FrozenBatchNorm2d (it was built from pretrained weights)."""
    return any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())


def num_classes_of(model: nn.Module) -> int:
    """Number of outputs of the box classifier (background included)."""
    return model.roi_heads.box_predictor.cls_score.out_features


def replace_head(model: nn.Module, old_names: tuple[str, ...], new_names: tuple[str, ...],
                 init_from_matching: bool = True) -> nn.Module:
    """Give the model a fresh box predictor for ``new_names`` (index 0 = background).

    With ``init_from_matching``, each new class whose name exists in ``old_names`` starts
    from the old class's weights (e.g. 'cow' from COCO's cow, id 21), and the background
    row is kept; other classes start at random. Works in place and returns the model.
    """
    old = model.roi_heads.box_predictor
    new = FastRCNNPredictor(old.cls_score.in_features, len(new_names)).to(old.cls_score.weight.device)
    if init_from_matching:
        with torch.no_grad():
            for i, name in enumerate(new_names):
                if name in old_names:
                    j = old_names.index(name)
                    new.cls_score.weight[i] = old.cls_score.weight[j]
                    new.cls_score.bias[i] = old.cls_score.bias[j]
                    new.bbox_pred.weight[4 * i:4 * i + 4] = old.bbox_pred.weight[4 * j:4 * j + 4]
                    new.bbox_pred.bias[4 * i:4 * i + 4] = old.bbox_pred.bias[4 * j:4 * j + 4]
    model.roi_heads.box_predictor = new
    return model


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the whole backbone (FPN included); heads stay trainable."""
    for param in model.backbone.parameters():
        param.requires_grad_(trainable)


def frozen_parameter_names(model: nn.Module) -> list[str]:
    """Names of parameters that do not train, so a checkpoint can rebuild the same model."""
    return [name for name, p in model.named_parameters() if not p.requires_grad]
