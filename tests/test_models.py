"""Architectures by name and where COCO weights come from."""

from urllib.error import URLError

import pytest
import torch

from cowdetect import DetectorBox
from cowdetect.models import ARCHITECTURES, coco_class_names, get_architecture, replace_head
from cowdetect.weights import WeightsUnavailableError, cache_path

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"


def test_wrong_architecture_lists_valid_names():
    with pytest.raises(ValueError) as err:
        get_architecture("yolo_v99")
    for name in ARCHITECTURES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="fasterrcnn_resnet50_fpn"):
        DetectorBox("yolo_v99")


def test_seed_architecture_is_available():
    assert "fasterrcnn_resnet50_fpn" in ARCHITECTURES


def test_coco_names():
    names = coco_class_names(ARCH)
    assert len(names) == 91 and names[1] == "person" and names[18] == "dog" and names[21] == "cow"


def _fake_coco_file(monkeypatch, tmp_path):
    """Put a real state dict with COCO's layout (91 classes) where torch's cache looks.

    It is not COCO's trained weights (those are a download), but it is the same file format
    and layout, so the cached-file path runs for real.
    """
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = get_architecture(ARCH).coco_weights.url
    target = cache_path(url)
    target.parent.mkdir(parents=True)
    torch.manual_seed(1)
    model = ARCHITECTURES[ARCH].builder(weights=None, weights_backbone=None, num_classes=91)
    # COCO weights use FrozenBatchNorm2d, which has no num_batches_tracked buffers.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, target)
    return state


def test_coco_weights_read_from_torch_cache(monkeypatch, tmp_path):
    state = _fake_coco_file(monkeypatch, tmp_path)
    box = DetectorBox(ARCH, weights="coco", device="cpu")
    assert len(box.class_names) == 91 and box.class_names[21] == "cow"
    w = box.model.roi_heads.box_predictor.cls_score.weight
    assert torch.equal(w, state["roi_heads.box_predictor.cls_score.weight"])


def test_coco_to_cow_initialises_cow_from_coco_class_21(monkeypatch, tmp_path):
    state = _fake_coco_file(monkeypatch, tmp_path)
    box = DetectorBox(ARCH, weights="coco", classes=["cow"], device="cpu")
    head = box.model.roi_heads.box_predictor
    assert box.class_names == ("__background__", "cow") and head.cls_score.out_features == 2
    assert torch.equal(head.cls_score.weight[1], state["roi_heads.box_predictor.cls_score.weight"][21])
    assert torch.equal(head.cls_score.weight[0], state["roi_heads.box_predictor.cls_score.weight"][0])
    assert torch.equal(head.bbox_pred.weight[4:8], state["roi_heads.box_predictor.bbox_pred.weight"][84:88])


def test_offline_download_gives_clear_message(monkeypatch, tmp_path):
    # The one mock in the suite: the download itself cannot run here (no internet), so the
    # network call is replaced by the error urllib raises offline.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torch.hub.download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError) as err:
        DetectorBox(ARCH, weights="coco", device="cpu")
    message = str(err.value)
    assert "https://download.pytorch.org/models/" in message
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in message


def test_replace_head_without_matching_names_is_random():
    model = ARCHITECTURES[ARCH].builder(weights=None, weights_backbone=None, num_classes=3)
    replace_head(model, ("__background__", "a", "b"), ("__background__", "cow"))
    assert model.roi_heads.box_predictor.cls_score.out_features == 2


def test_cuda_without_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        DetectorBox(weights=None, device="cuda")
