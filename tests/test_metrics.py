"""mAP equals pycocotools run directly on the same data."""

import copy
import io
import contextlib

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cowdetect.detections import BACKGROUND, Detections
from cowdetect.metrics import evaluate_detections, match

NAMES = (BACKGROUND, "cow", "dog")


def random_case(seed: int, n_images: int = 12):
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (n, 2))
        wh = rng.uniform(4, 200, (n, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        cls = rng.integers(1, 3, n)
        gts.append(Detections(gt, cls, None, NAMES))
        keep = rng.random(n) < 0.8  # some misses
        jitter = rng.normal(0, 8, (int(keep.sum()), 4))
        p = gt[keep] + jitter
        p = np.concatenate([np.minimum(p[:, :2], p[:, 2:]), np.maximum(p[:, :2], p[:, 2:])], 1)
        m = int(rng.integers(0, 4))  # false positives
        fxy = rng.uniform(0, 300, (m, 2))
        fp = np.concatenate([fxy, fxy + rng.uniform(4, 100, (m, 2))], 1)
        boxes = np.concatenate([p, fp]).reshape(-1, 4)
        classes = np.concatenate([cls[keep], rng.integers(1, 3, m)])
        preds.append(Detections(boxes, classes, rng.uniform(0.05, 1, len(boxes)), NAMES))
    return preds, gts


def pycocotools_stats(preds, gts):
    images, anns, dets = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts)):
        images.append({"id": i, "width": 1000, "height": 1000})
        for b, c in zip(g.xyxy.astype(float), g.class_id):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for b, c, s in zip(p.xyxy.astype(float), p.class_id, p.score.astype(float)):
            dets.append({"image_id": i, "category_id": int(c), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                         "score": s})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": 1, "name": "cow"}, {"id": 2, "name": "dog"}]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_equals_pycocotools(seed, backend):
    preds, gts = random_case(seed)
    ours = evaluate_detections(preds, gts, backend=backend)
    ref = pycocotools_stats(preds, gts)
    assert abs(ours.map - ref[0]) <= 1e-6
    assert abs(ours.map_50 - ref[1]) <= 1e-6
    assert abs(ours.map_75 - ref[2]) <= 1e-6
    assert abs(ours.mar_100 - ref[8]) <= 1e-6
    assert set(ours.per_class) == {"cow", "dog"}


def test_perfect_predictions_score_one():
    _, gts = random_case(5)
    preds = [Detections(g.xyxy, g.class_id, np.ones(len(g)), NAMES) for g in gts]
    assert evaluate_detections(preds, gts).map == pytest.approx(1.0)


def test_classes_are_mapped_by_name():
    gt = Detections([[0, 0, 50, 50]], [1], None, (BACKGROUND, "cow"))
    coco_like = (BACKGROUND, "person", "cow")  # cow has another id in the model's vocabulary
    pred = Detections([[0, 0, 50, 50], [60, 60, 90, 90]], [2, 1], [0.9, 0.8], coco_like)
    result = evaluate_detections([pred], [gt])
    assert result.map_50 == pytest.approx(1.0) and result.num_predictions == 1


def test_no_shared_class_is_an_error():
    gt = Detections([[0, 0, 50, 50]], [1], None, (BACKGROUND, "cow"))
    pred = Detections([[0, 0, 50, 50]], [1], [0.9], (BACKGROUND, "horse"))
    with pytest.raises(ValueError, match="share no name"):
        evaluate_detections([pred], [gt])


def test_no_ground_truth_is_an_error():
    empty = Detections.empty((BACKGROUND, "cow"))
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        evaluate_detections([Detections.empty((BACKGROUND, "cow"), scored=True)], [empty])
    with pytest.raises(ValueError, match="no images"):
        evaluate_detections([], [])


def test_match_greedy_by_score():
    gt = Detections([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], None, (BACKGROUND, "cow"))
    pred = Detections([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], [1, 1, 1], [0.5, 0.9, 0.7],
                      (BACKGROUND, "cow"))
    tp, matched = match(pred, gt, 0.5)
    assert tp.tolist() == [False, True, False] and matched.tolist() == [True, False]
