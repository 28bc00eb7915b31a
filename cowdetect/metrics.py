"""mAP (COCO / pycocotools semantics via torchmetrics) and per-image matching.

Predictions are mapped onto the dataset's classes *by name* before scoring, so a COCO
model's 'cow' is scored against the dataset's 'cow' and its 'person' boxes are ignored.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

from .detections import BACKGROUND, Detections


def default_backend() -> str:
    """'faster_coco_eval' when installed (same numbers, faster), else 'pycocotools'."""
    return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"


@dataclass
class EvalResult:
    """COCO box metrics for one model on one dataset. -1 means "not defined" (e.g. no small boxes)."""

    map: float
    map_50: float
    map_75: float
    map_small: float
    map_medium: float
    map_large: float
    mar_1: float
    mar_10: float
    mar_100: float
    num_images: int
    num_ground_truth: int
    num_predictions: int
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    # One row per image: image_id, n_gt, n_pred, tp, fp, fn (at iou_threshold and
    # score_threshold), ap, ap_50 (-1 when the image has no ground truth).
    per_image: list[dict[str, Any]] = field(default_factory=list)
    iou_threshold: float = 0.5
    score_threshold: float = 0.5
    backend: str = "pycocotools"
    # Precision-recall curve at IoU 0.5 per class: precision at recall 0.00, 0.01, ... 1.00
    # (COCO's interpolated precision, all areas, 100 detections; -1 where recall is never reached).
    pr_curve: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _tm_inputs(preds: Sequence[Detections], gts: Sequence[Detections]) -> tuple[list[dict], list[dict]]:
    p = [{"boxes": torch.from_numpy(d.xyxy), "scores": torch.from_numpy(d.score if d.score is not None
          else np.ones(len(d), np.float32)), "labels": torch.from_numpy(d.class_id)} for d in preds]
    t = [{"boxes": torch.from_numpy(g.xyxy), "labels": torch.from_numpy(g.class_id)} for g in gts]
    return p, t


# pycocotools' own thresholds in float64. torchmetrics' defaults come from a float32
# torch.linspace (0.3 becomes 0.30000001), which moves a recall of exactly 3/10 to the next
# threshold and changes mAP by up to ~1e-3 against pycocotools.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()


def _metric(backend: str, class_metrics: bool, extended: bool = False) -> MeanAveragePrecision:
    # Every evaluation here sees its whole dataset in one process. Under torchrun torchmetrics would
    # otherwise gather from all ranks on compute() and wait forever when rank 0 alone evaluates.
    return MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=class_metrics, backend=backend,
                                iou_thresholds=IOU_THRESHOLDS, rec_thresholds=RECALL_THRESHOLDS,
                                extended_summary=extended, sync_on_compute=False)


def match(pred: Detections, gt: Detections, iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCO-style matching in score order, within each class.

    Returns (pred_is_tp: bool (P,), gt_matched: bool (G,)). Boxes are xyxy pixels and
    both must share one vocabulary.
    """
    tp = np.zeros(len(pred), bool)
    matched = np.zeros(len(gt), bool)
    if not len(pred) or not len(gt):
        return tp, matched
    iou = box_iou(torch.from_numpy(pred.xyxy), torch.from_numpy(gt.xyxy)).numpy()
    order = np.argsort(-(pred.score if pred.score is not None else np.ones(len(pred))), kind="stable")
    for i in order:
        candidates = np.where((gt.class_id == pred.class_id[i]) & ~matched & (iou[i] >= iou_threshold))[0]
        if len(candidates):
            j = candidates[np.argmax(iou[i, candidates])]
            matched[j] = True
            tp[i] = True
    return tp, matched


def _per_class(out: dict[str, torch.Tensor], names: Sequence[str]
               ) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """({class: ap, ap_50, ar_100}, {class: PR curve at IoU 0.5}) from an extended torchmetrics summary."""
    per_class: dict[str, dict[str, float]] = {}
    pr_curve: dict[str, list[float]] = {}
    classes = out["classes"].reshape(-1).tolist()
    # precision: (IoU thresholds, recall thresholds, classes, areas, max detections); IoU 0.5,
    # all areas, 100 detections. Its class axis follows the sorted class ids, as "classes" does.
    precision = out["precision"][0, :, :, 0, -1].numpy()
    for k, cls in enumerate(classes):
        curve = precision[:, k]
        per_class[names[int(cls)]] = {"ap": float(out["map_per_class"].reshape(-1)[k]),
                                      "ap_50": float(curve[curve > -1].mean()) if (curve > -1).any() else -1.0,
                                      "ar_100": float(out["mar_100_per_class"].reshape(-1)[k])}
        pr_curve[names[int(cls)]] = [round(float(v), 6) for v in curve]
    return per_class, pr_curve


def _per_image(ids: Sequence[Any], preds: Sequence[Detections], gts: Sequence[Detections], backend: str,
               iou_threshold: float, score_threshold: float) -> list[dict[str, Any]]:
    """One :attr:`EvalResult.per_image` row per image: counts at the thresholds, and the image's own AP."""
    per_image = []
    for image_id, pred, gt in zip(ids, preds, gts):
        kept = pred.above(score_threshold)
        tp, matched = match(kept, gt, iou_threshold)
        row = {"image_id": image_id, "n_gt": len(gt), "n_pred": len(kept), "tp": int(tp.sum()),
               "fp": int((~tp).sum()), "fn": int((~matched).sum()), "ap": -1.0, "ap_50": -1.0}
        if len(gt):
            single = _metric(backend, class_metrics=False)
            single.update(*_tm_inputs([pred], [gt]))
            res = single.compute()
            row["ap"], row["ap_50"] = float(res["map"]), float(res["map_50"])
        per_image.append(row)
    return per_image


def evaluate_detections(preds: Sequence[Detections], gts: Sequence[Detections],
                        image_ids: Sequence[Any] | None = None, backend: str | None = None,
                        iou_threshold: float = 0.5, score_threshold: float = 0.5) -> EvalResult:
    """Score predictions against ground truth (both xyxy pixels), one entry per image.

    Predictions are re-indexed onto the ground truth's class names; classes the dataset
    does not have are dropped.

    Raises:
        ValueError: different numbers of predictions and images, no images, no ground-truth
            boxes, or no class shared by the model and the dataset.
    """
    if len(preds) != len(gts):
        raise ValueError(f"preds: expected one entry per image ({len(gts)}), got {len(preds)}")
    if not gts:
        raise ValueError("dataset: no images to evaluate on")
    if sum(len(g) for g in gts) == 0:
        raise ValueError("dataset: no ground-truth boxes to evaluate against")
    names = gts[0].class_names
    shared = set(preds[0].class_names) & set(names) - {BACKGROUND} if preds else set()
    if not shared:
        raise ValueError(f"model classes {list(preds[0].class_names[1:])[:10]} share no name with the "
                         f"dataset's {list(names[1:])}")
    preds = [p.with_class_names(names) for p in preds]
    backend = backend or default_backend()
    ids = list(image_ids) if image_ids is not None else list(range(len(gts)))

    metric = _metric(backend, class_metrics=True, extended=True)
    metric.update(*_tm_inputs(preds, gts))
    out = metric.compute()
    per_class, pr_curve = _per_class(out, names)
    per_image = _per_image(ids, preds, gts, backend, iou_threshold, score_threshold)
    return EvalResult(
        **{k: float(out[k]) for k in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                                       "mar_1", "mar_10", "mar_100")},
        num_images=len(gts), num_ground_truth=sum(len(g) for g in gts),
        num_predictions=sum(len(p) for p in preds), per_class=per_class, per_image=per_image,
        iou_threshold=iou_threshold, score_threshold=score_threshold, backend=backend, pr_curve=pr_curve)


def worst_first(per_image: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-image rows (``EvalResult.per_image``) lowest AP first, more missed cows first among
    equals; images without ground truth (AP -1) last."""
    return sorted(per_image, key=lambda r: (r["ap"] < 0, r["ap"], -r["fn"]))
