"""A detector exported to ONNX (:mod:`cowdetect.export`), run by onnxruntime behind the
:class:`~cowdetect.detector.DetectorBox` facade: predict, evaluate and tracking work as with the
PyTorch model, so the two can be measured the same way; training is refused. onnxruntime lives here.

``DetectorBox.load("model.onnx")`` and model specs naming a ``.onnx`` file open one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnxruntime as ort

from . import tiling
from .config import ARCHITECTURE_NAMES, DetectorConfig
from .detections import Detections
from .detector import DetectorBox, _first_line, resolve_device, set_threads
from .export import INPUT_NAME, ONNX_FORMAT, ONNX_VERSION

# metadata every cowdetect export carries (see cowdetect.export.onnx_metadata)
REQUIRED_META = ("architecture", "class_names", "input_size", "score_threshold", "max_detections")
MAX_CLASS_NAMES = 1000


def _session(path: Path, threads: int, providers: Sequence[str] = ("CPUExecutionProvider",),
             optimize: bool = True) -> ort.InferenceSession:
    """An onnxruntime session on ``path`` with ``threads`` threads; ValueError naming the file when
    onnxruntime cannot read it (not ONNX, cut off, damaged). ``optimize=False`` skips onnxruntime's
    graph optimisation: enough to read the metadata (every resolve of an .onnx spec does), not to run."""
    if not path.is_file():
        raise ValueError(f"weights: no ONNX file at {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"weights: {path} is empty (0 bytes), not an ONNX model")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the same count torch uses, so the two compare fairly
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime's own warnings go to stderr; errors become our ValueError
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes (InvalidProtobuf, Fail, ...)
        raise ValueError(f"weights: {path} is not a readable ONNX model ({_first_line(exc)[:200]})") from None


def _metadata(path: Path, session: ort.InferenceSession) -> dict[str, Any]:
    """The export's metadata, checked: architecture, class names (background first), input size,
    score threshold and detection limit; ValueError for an ONNX file cowdetect did not write."""
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get("format") != ONNX_FORMAT:
        raise ValueError(f"weights: {path} is an ONNX model but not a cowdetect export (its metadata has no "
                         f"format {ONNX_FORMAT!r}); write one with: python -m cowdetect export-model MODEL "
                         f"--format onnx --out FILE.onnx")
    if not meta.get("format_version", "").isdigit() or int(meta["format_version"]) > ONNX_VERSION:
        raise ValueError(f"weights: {path} was exported by a newer cowdetect (format {meta.get('format_version')!r})")
    missing = [key for key in REQUIRED_META if key not in meta]
    try:
        if missing:
            raise KeyError(missing)
        names = json.loads(meta["class_names"])
        # the names reach labels, CSVs and logs: printable and bounded (not unique: COCO's have 'N/A' gaps)
        if not isinstance(names, list) or not 2 <= len(names) <= MAX_CLASS_NAMES \
                or not all(isinstance(n, str) and 0 < len(n) <= 100 and n.isprintable() for n in names):
            raise TypeError(names)
        if meta["architecture"] not in ARCHITECTURE_NAMES or not 1 <= int(meta["input_size"]) <= 10_000:
            raise ValueError(meta["architecture"])
        # exports before score groups lack the key: their graph scores every class alone. The
        # config checks the group as it checks a checkpoint's (ValueError when it is not one)
        group = json.loads(meta.get("score_group", "[]"))
        DetectorConfig(meta["architecture"], names[1:], score_group=group)
        return {"architecture": meta["architecture"], "class_names": tuple(names),
                "input_size": int(meta["input_size"]), "score_threshold": float(meta["score_threshold"]),
                "max_detections": int(meta["max_detections"]), "source": meta.get("source", "")[:500],
                "score_group": tuple(group)}
    except (KeyError, TypeError, ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise ValueError(f"weights: {path}: its cowdetect metadata is incomplete or damaged "
                         f"({'missing ' + ', '.join(missing) if missing else 'unreadable values'})") from None


def read_onnx_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a cowdetect ONNX export (architecture, class_names, input_size,
    score_threshold, max_detections, source, score_group), checked; ValueError naming the file otherwise."""
    path = Path(path)
    return _metadata(path, _session(path, 1, optimize=False))


class OnnxDetectorBox(DetectorBox):
    """A cowdetect ONNX export behind the :class:`DetectorBox` facade (boxes xyxy pixels, images RGB).

    One image per onnxruntime call (the graph takes one image of any size); ``threads`` as for
    PyTorch (default ``$COWDETECT_THREADS`` or all cores) sets onnxruntime's thread count too.
    Training, saving and changing classes are refused: the file holds no trainable weights.
    """

    def __init__(self, path: str | Path, device: str = "auto", *, threads: int | None = None) -> None:
        self.onnx_path = Path(path)
        self.device = resolve_device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = _session(self.onnx_path, set_threads(threads), providers)
        meta = _metadata(self.onnx_path, self.session)
        self.config = DetectorConfig(meta["architecture"], meta["class_names"][1:],
                                     score_threshold=meta["score_threshold"], max_detections=meta["max_detections"],
                                     score_group=meta["score_group"])  # what the graph already does
        self._names, self._input_size = meta["class_names"], meta["input_size"]
        self.origin = f"{self.architecture} (ONNX {self.onnx_path.name}, onnxruntime on {providers[0]})"

    def __repr__(self) -> str:
        return f"OnnxDetectorBox({str(self.onnx_path)!r}, architecture={self.architecture!r})"

    @property
    def class_names(self) -> tuple[str, ...]:
        """The export's own vocabulary (background at 0), as its labels index it."""
        return self._names

    @property
    def input_size(self) -> int:
        return self._input_size

    def detect_arrays(self, arrays: Sequence[Any], batch_size: int = 4,
                      tiles: str | tuple[int, int] = "off") -> list[Detections]:
        """As :meth:`DetectorBox.detect_arrays`: the export's detections (xyxy px) for RGB uint8 arrays."""
        spec = tiling.parse_tiles(tiles)

        def detect(images: list[Any]) -> list[Detections]:
            out = []
            for rgb in images:
                boxes, scores, labels = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(rgb, np.uint8)})
                try:
                    out.append(Detections(boxes, labels, scores, self._names))
                except ValueError as exc:  # a graph that is not what its metadata claims
                    raise ValueError(f"weights: {self.onnx_path.name} gave outputs that are not detections of "
                                     f"its classes ({_first_line(exc)[:200]})") from None
            return out

        if spec == "off":
            return detect(list(arrays))
        return [tiling.detect_tiled(detect, rgb, tiling.grid_for(spec, rgb.shape[1], rgb.shape[0], self.input_size),
                                    limit=self.config.max_detections) for rgb in arrays]

    @property
    def model(self) -> Any:
        """Refused (ValueError): the export runs in onnxruntime; it has no PyTorch module to reach into."""
        raise self._refuse("use the PyTorch module of")

    def _refuse(self, what: str) -> ValueError:
        return ValueError(f"{what}: {self.onnx_path.name} is an ONNX export, for inference only; "
                          f"{what} its source model (a .pt checkpoint or stored version) and export again")

    def train(self, *args: Any, **kwargs: Any) -> list[dict[str, float]]:
        """Refused (ValueError): an ONNX export cannot be trained."""
        raise self._refuse("train")

    def set_classes(self, classes: Sequence[str], init_from_matching: bool = True) -> None:
        """Refused (ValueError): the export's class head is fixed."""
        raise self._refuse("change the classes of")

    def set_score_group(self, group: Sequence[str]) -> None:
        """Refused (ValueError): the export's scoring is part of its graph."""
        raise self._refuse("change the score group of")

    def save(self, *args: Any, **kwargs: Any) -> Path:
        """Refused (ValueError): the ONNX file is the model; copy it."""
        raise ValueError(f"save: {self.onnx_path.name} is an ONNX export; copy the file to keep it")
