"""SSD-MobileNetV2 (TensorFlow Object Detection API, COCO 2018-03-29) as a PyTorch module.

The layers, TensorFlow "SAME" padding (uneven on stride-2 layers), anchors, box coding and
sigmoid scoring follow the shipped TensorFlow graph exactly, so the COCO weights converted
by :mod:`cowdetect.ssd_weights` give the same detections as OpenCV's DNN on that graph.
The module speaks torchvision's detection API: ``model(images)`` in eval mode returns a
list of ``{"boxes" (xyxy px), "labels", "scores"}``; ``model(images, targets)`` in train
mode returns a loss dict (``loss_classifier``, ``loss_box_reg``), so the same engine loops
train and run it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

INPUT_SIZE = 300
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon in this graph
# CENTER_SIZE box coding: the graph's variances 0.1, 0.1, 0.2, 0.2 as scale factors.
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
# MobileNetV2 inverted residual blocks after the stem: (expansion, output channels, stride).
BLOCKS = [(1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2), (6, 64, 1),
          (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1)]
# Extra feature layers: (1x1 depth, output depth); each halves the map with a stride-2 depthwise conv.
EXTRAS = [(256, 512), (128, 256), (128, 256), (64, 128)]
HEAD_CHANNELS = [576, 1280, 512, 256, 256, 128]
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.333)  # the graph uses 0.333, not 1/3


def same_padding(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Pad like TensorFlow's "SAME": the extra pixel of an odd total goes right/bottom."""
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / stride) - 1) * stride + kernel - ih, 0)
    pw = max((math.ceil(iw / stride) - 1) * stride + kernel - iw, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class ConvBN(nn.Module):
    """Conv (no bias, SAME padding) + BatchNorm + optional ReLU6; ``tf_name`` maps the weights."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 relu: bool = True, tf_name: str = "") -> None:
        super().__init__()
        self.kernel, self.stride, self.relu, self.tf_name = kernel, stride, relu, tf_name
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(same_padding(x, self.kernel, self.stride)))
        return F.relu6(x) if self.relu else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand → 3x3 depthwise → 1x1 project (+ residual)."""

    def __init__(self, cin: int, cout: int, expansion: int, stride: int, tf_name: str) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBN(cin, hidden, tf_name=f"{tf_name}/expand") if expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, 3, stride, groups=hidden, tf_name=f"{tf_name}/depthwise")
        self.project = ConvBN(hidden, cout, relu=False, tf_name=f"{tf_name}/project")
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Returns (output, expansion output); the latter feeds SSD's first head in block 13."""
        expanded = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(expanded))
        return (out + x if self.residual else out), expanded


def tf_anchors(feature_sizes: list[int]) -> Tensor:
    """The graph's 1,917 anchors as (cx, cy, w, h), normalised to [0, 1] (for 19, 10, 5, 3, 2, 1)."""
    n = len(feature_sizes)
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * k / (n - 1) for k in range(n)] + [1.0]
    out = []
    for k, size in enumerate(feature_sizes):
        if k == 0:  # "reduce_boxes_in_lowest_layer": 3 anchors, the first at scale 0.1
            shapes = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            shapes = [(scales[k], ar) for ar in ASPECT_RATIOS] + [(math.sqrt(scales[k] * scales[k + 1]), 1.0)]
        wh = torch.tensor([[s * math.sqrt(ar), s / math.sqrt(ar)] for s, ar in shapes], dtype=torch.float64)
        centers = (torch.arange(size, dtype=torch.float64) + 0.5) / size
        cy, cx = torch.meshgrid(centers, centers, indexing="ij")
        grid = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, len(shapes), 2)
        out.append(torch.cat([grid, wh.expand(size * size, -1, -1)], -1).reshape(-1, 4))
    return torch.cat(out).float()


class SSDMobileNetV2(nn.Module):
    """SSD with a MobileNetV2 feature extractor at 300x300, sigmoid class scores.

    Args:
        num_classes: outputs per anchor, background (index 0) included: 91 for COCO.
        score_threshold: drop detections below this score (the graph uses 0.01).
        nms_threshold: per-class NMS IoU (0.6 in the graph).
        max_detections: detections kept per image (100).
        score_group: () or class ids (target first): the target's score becomes the noisy-OR of
            theirs, as if each were an independent chance (see :meth:`postprocess`).
    """

    def __init__(self, num_classes: int = 91, score_threshold: float = 0.01, nms_threshold: float = 0.6,
                 max_detections: int = 100, score_group: tuple[int, ...] = (), **_: Any) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.score_group = tuple(score_group)
        self.score_threshold, self.nms_threshold, self.max_detections = score_threshold, nms_threshold, max_detections
        self.stem = ConvBN(3, 32, 3, 2, tf_name="Conv")
        blocks, cin = [], 32
        for i, (t, c, s) in enumerate(BLOCKS):
            blocks.append(InvertedResidual(cin, c, t, s, "expanded_conv" if i == 0 else f"expanded_conv_{i}"))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.last = ConvBN(320, 1280, tf_name="Conv_1")
        extras, cin = [], 1280
        for k, (mid, out) in enumerate(EXTRAS, start=2):
            extras.append(nn.Sequential(
                ConvBN(cin, mid, tf_name=f"layer_19_1_Conv2d_{k}_1x1_{mid}"),
                ConvBN(mid, mid, 3, 2, groups=mid, tf_name=f"layer_19_2_Conv2d_{k}_3x3_s2_{out}_depthwise"),
                ConvBN(mid, out, tf_name=f"layer_19_2_Conv2d_{k}_3x3_s2_{out}")))
            cin = out
        self.extras = nn.ModuleList(extras)
        self.anchors_per_cell = [3, 6, 6, 6, 6, 6]
        self.cls_heads = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3) for c, a in
                                       zip(HEAD_CHANNELS, self.anchors_per_cell))
        self.box_heads = nn.ModuleList(nn.Conv2d(c, a * 4, 3) for c, a in zip(HEAD_CHANNELS, self.anchors_per_cell))
        self.register_buffer("anchors", tf_anchors([19, 10, 5, 3, 2, 1]), persistent=False)
        # Channels-last makes the depthwise convolutions ~25 % faster on CPUs (measured:
        # 38 vs 50 ms per 300 px image on 2 cores); weights loaded later keep this layout.
        self.to(memory_format=torch.channels_last)

    # -- the network ---------------------------------------------------------------------
    def features(self, x: Tensor) -> list[Tensor]:
        """The six feature maps (19, 10, 5, 3, 2, 1 at 300 px) from a normalised batch in [-1, 1]."""
        x = self.stem(x)
        maps = []
        for i, block in enumerate(self.blocks):
            x, expanded = block(x)
            if i == 13:
                maps.append(expanded)
        maps.append(self.last(x))
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps

    def head_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(class logits (N, 1917, C), box codes (N, 1917, 4) as tx, ty, tw, th) for a [-1, 1] batch."""
        logits, codes = [], []
        for fmap, cls, box in zip(self.features(x), self.cls_heads, self.box_heads):
            n = fmap.shape[0]
            padded = same_padding(fmap, 3, 1)
            # NHWC order, as TensorFlow flattens: anchors of one cell are consecutive
            logits.append(cls(padded).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
            codes.append(box(padded).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(logits, 1), torch.cat(codes, 1)

    @staticmethod
    def preprocess(images: list[Tensor]) -> Tensor:
        """RGB float images (3, H, W) in [0, 1] → a (N, 3, 300, 300) batch in [-1, 1] (the graph's scaling)."""
        batch = torch.stack([F.interpolate(img[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                           align_corners=False)[0] for img in images])
        return (batch * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None) -> Any:
        sizes = [(img.shape[-2], img.shape[-1]) for img in images]
        logits, codes = self.head_outputs(self.preprocess(images))
        if self.training:
            if targets is None:
                raise ValueError("targets: needed in training mode")
            return self.loss(logits, codes, targets, sizes)
        return self.postprocess(logits, codes, sizes)

    # -- decoding ------------------------------------------------------------------------
    # Box codes are (tx, ty, tw, th). TensorFlow's head emits (ty, tx, th, tw); OpenCV's importer
    # reorders those weights, and the COCO weights are read through OpenCV, so ours follow it.
    def decode(self, codes: Tensor) -> Tensor:
        """Box codes (…, 1917, 4: tx, ty, tw, th) → normalised xyxy boxes."""
        a = self.anchors
        cx = codes[..., 0] / BOX_SCALES[0] * a[:, 2] + a[:, 0]
        cy = codes[..., 1] / BOX_SCALES[1] * a[:, 3] + a[:, 1]
        w = torch.exp(codes[..., 2] / BOX_SCALES[2]) * a[:, 2]
        h = torch.exp(codes[..., 3] / BOX_SCALES[3]) * a[:, 3]
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)

    def encode(self, boxes: Tensor) -> Tensor:
        """Normalised xyxy boxes (1917, 4), one per anchor → codes (tx, ty, tw, th)."""
        a = self.anchors
        w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6)
        h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)
        cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
        return torch.stack([(cx - a[:, 0]) / a[:, 2] * BOX_SCALES[0], (cy - a[:, 1]) / a[:, 3] * BOX_SCALES[1],
                            torch.log(w / a[:, 2]) * BOX_SCALES[2], torch.log(h / a[:, 3]) * BOX_SCALES[3]], -1)

    def postprocess(self, logits: Tensor, codes: Tensor, sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Sigmoid scores, per-class top 100 and NMS, then the best ``max_detections`` (as the graph).

        With a ``score_group`` the target's score is 1 - prod(1 - p) over the group's sigmoid
        scores (separate per class, so read as independent chances): COCO's SSD splits a few-pixel cow's score between
        cow, horse and sheep, none above 0.3, though together it is sure of an animal there.
        The other classes keep their own scores."""
        scores_all = torch.sigmoid(logits.float())
        if self.score_group:
            merged = 1 - torch.prod(1 - scores_all[..., list(self.score_group)], dim=-1)
            scores_all = torch.cat([scores_all[..., :self.score_group[0]], merged[..., None],
                                    scores_all[..., self.score_group[0] + 1:]], dim=-1)
        scores_all = scores_all[..., 1:]  # drop the background column
        boxes_all = self.decode(codes.float())
        results = []
        for scores, boxes, (h, w) in zip(scores_all, boxes_all, sizes):
            k = min(100, scores.shape[0])
            top_scores, top_anchors = scores.t().topk(k, dim=1)  # (classes, k)
            classes = torch.arange(1, self.num_classes, device=scores.device)[:, None].expand_as(top_anchors)
            keep = top_scores > self.score_threshold
            s, a, c = top_scores[keep], top_anchors[keep], classes[keep]
            b = boxes[a]
            kept = batched_nms(b, s, c, self.nms_threshold)[: self.max_detections]
            scale = torch.tensor([w, h, w, h], dtype=b.dtype, device=b.device)
            results.append({"boxes": b[kept] * scale, "labels": c[kept], "scores": s[kept]})
        return results

    # -- training ------------------------------------------------------------------------
    def loss(self, logits: Tensor, codes: Tensor, targets: list[dict[str, Tensor]],
             sizes: list[tuple[int, int]], neg_ratio: int = 3) -> dict[str, Tensor]:
        """The TF config's SSD loss: argmax matching at IoU 0.5 (every box gets its best anchor),
        smooth-L1 on box codes, sigmoid cross-entropy on classes with 3:1 hard negative mining,
        both normalised by the number of matched anchors."""
        anchors_xyxy = torch.cat([self.anchors[:, :2] - self.anchors[:, 2:] / 2,
                                  self.anchors[:, :2] + self.anchors[:, 2:] / 2], 1)
        cls_losses, box_losses, n_pos_total = [], [], 0
        for logit, code, target, (h, w) in zip(logits, codes, targets, sizes):
            gt = target["boxes"] / torch.tensor([w, h, w, h], dtype=torch.float32, device=logit.device)
            labels = torch.zeros(len(self.anchors), dtype=torch.long, device=logit.device)
            matched = torch.zeros_like(self.anchors)
            if len(gt):
                iou = box_iou(gt, anchors_xyxy)  # (G, A)
                best_iou, best_gt = iou.max(0)
                best_gt[iou.argmax(1)] = torch.arange(len(gt), device=gt.device)  # force-match each box
                best_iou[iou.argmax(1)] = 1.0
                positive = best_iou >= 0.5
                labels[positive] = target["labels"][best_gt[positive]]
                matched = gt[best_gt]
            positive = labels > 0
            n_pos = int(positive.sum())
            onehot = F.one_hot(labels, self.num_classes).float()
            per_anchor = F.binary_cross_entropy_with_logits(logit.float(), onehot, reduction="none").sum(1)
            negatives = per_anchor.detach().clone()
            negatives[positive] = -1.0
            n_neg = min(max(neg_ratio * n_pos, 3), int((~positive).sum()))
            hard = negatives.topk(n_neg).indices
            cls_losses.append(per_anchor[positive].sum() + per_anchor[hard].sum())
            if n_pos:
                box_losses.append(F.smooth_l1_loss(code[positive].float(), self.encode(matched)[positive],
                                                   beta=1.0, reduction="sum"))
            n_pos_total += n_pos
        norm = max(1, n_pos_total)
        zero = logits.sum() * 0.0
        return {"loss_classifier": torch.stack(cls_losses).sum() / norm,
                "loss_box_reg": (torch.stack(box_losses).sum() if box_losses else zero) / norm}
