"""Plain training and inference loops for torchvision detection models.

Top to bottom, no framework: the shape of torchvision's ``references/detection/engine.py``.
Progress leaves through a callback so the CLI, jobs and notebooks share one loop.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .augment import Augment
from .config import TrainConfig
from .data import LabeledDataset, Sample
from .distributed import Ranks, any_rank, current, epoch_shard, local_batch, mean_over_ranks, wrap

# Called after every iteration with that iteration's record (iteration, loss, each loss
# component, lr, seconds). Returning False stops training after that iteration.
TrainCallback = Callable[[dict[str, float]], "bool | None"]
# Called every ``checkpoint_every`` iterations and when training stops early, with the
# iteration reached and the optimizer (whose state a resume needs).
CheckpointFn = Callable[[int, torch.optim.Optimizer], None]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the message names the iteration."""


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """RGB uint8 (H, W, 3) → float (3, H, W) in [0, 1] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float().div_(255.0)


def _target(sample: Sample, augment: Augment, device: torch.device) -> tuple[torch.Tensor, dict]:
    image = to_tensor(sample.load(), torch.device("cpu"))
    boxes = torch.from_numpy(sample.boxes.xyxy.copy()).reshape(-1, 4)
    labels = torch.from_numpy(sample.boxes.class_id.copy())
    image, boxes, labels = augment(image, boxes, labels)
    # Degenerate (zero-area) boxes make torchvision's box coder produce NaN: drop them.
    keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
    return image.to(device), {"boxes": boxes[keep].to(device), "labels": labels[keep].to(device)}


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then x0.1 at each of ``lr_steps``."""
    factor = 1.0
    if iteration < config.warmup_iterations:
        factor = 0.001 + (1 - 0.001) * iteration / config.warmup_iterations
    for step in config.lr_steps:
        if iteration >= step * config.iterations:
            factor *= 0.1
    return factor


def _tensors(samples: Sequence[Sample], augment: Augment,
             device: torch.device) -> tuple[list[torch.Tensor], list[dict]]:
    """The images and targets of ``samples``, augmented, on ``device``: a torchvision detector's input."""
    images, targets = [], []
    for sample in samples:
        image, target = _target(sample, augment, device)
        images.append(image)
        targets.append(target)
    return images, targets


def _next_batch(dataset: LabeledDataset, order: list[int], rng: np.random.Generator,
                batch_size: int, ranks: Ranks | None = None) -> list[Sample]:
    """The next ``batch_size`` samples; ``order`` (consumed) is refilled with a new shuffle each epoch
    (with ``ranks``, this rank's shard of it: :func:`cowdetect.distributed.epoch_shard`)."""
    batch: list[Sample] = []
    while len(batch) < batch_size:
        if not order:
            order.extend(epoch_shard(len(dataset), rng, *((ranks.rank, ranks.world) if ranks else (0, 1))))
        batch.append(dataset[order.pop()])
    return batch


def _optimizer(model: nn.Module, config: TrainConfig, state: dict | None) -> torch.optim.Optimizer:
    """SGD over the trainable parameters, with ``state`` (a resumed run's momentum) when given."""
    from .models import backbone_parameters

    # The feature extractor may learn slower than the heads (config.backbone_lr): what COCO
    # taught it is forgotten less on a small, narrow dataset.
    # One group when both learn alike: checkpoints of runs from before this setting hold one group,
    # and a resumed optimizer needs the same groups as the one that saved it.
    backbone = {id(p) for p in backbone_parameters(model)} if config.backbone_lr != 1.0 else set()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and (id(p) in backbone) == inside],
               "lr_scale": scale} for inside, scale in ((True, config.backbone_lr), (False, 1.0))]
    optimizer = torch.optim.SGD([g for g in groups if g["params"]], lr=config.learning_rate,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state)
    return optimizer


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
          images: list[torch.Tensor], targets: list[dict], iteration: int, config: TrainConfig,
          device: torch.device) -> tuple[float, dict[str, float]]:
    """One optimizer step; returns (loss, its components). Raises TrainingDivergedError on a non-finite loss."""
    with torch.autocast(device.type, enabled=device.type == "cuda"):
        loss_dict = model(images, targets)
    loss = sum(loss_dict.values())
    value = float(loss.detach())
    if not math.isfinite(value):
        parts = {k: float(v.detach()) for k, v in loss_dict.items()}
        raise TrainingDivergedError(
            f"loss became {value} at iteration {iteration + 1} ({parts}); lower the learning rate "
            f"(now {config.learning_rate}) or check the boxes")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return value, {k: float(v.detach()) for k, v in loss_dict.items()}


def train_loop(model: nn.Module, dataset: LabeledDataset, config: TrainConfig, device: torch.device,
               callback: TrainCallback | None = None, checkpoint: CheckpointFn | None = None,
               start_iteration: int = 0, optimizer_state: dict | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place up to ``config.iterations``; returns one record per iteration run.

    ``start_iteration`` and ``optimizer_state`` resume a run from a checkpoint: the learning
    rate schedule continues where it was and SGD keeps its momentum.

    Images without boxes are used as negatives; ``config`` switches flip, colour and scale
    augmentation (:mod:`cowdetect.augment`). Raises :class:`TrainingDivergedError` on a
    non-finite loss, ValueError on an empty dataset or a box outside its image.

    Under torchrun (:mod:`cowdetect.distributed`) each rank trains on its shard with its part of
    ``config.batch_size`` in DistributedDataParallel; the records hold the loss averaged over the
    ranks, the ranks stop together when any callback says stop, and rank 0 alone checkpoints.
    """
    dataset.require_nonempty("train")
    ranks = current()
    batch_size = local_batch(config.batch_size, ranks.world) if ranks else config.batch_size
    # Seeded by (seed, start) so a run and its resume are each repeatable; the same on every rank,
    # which deal out the same shuffles (epoch_shard).
    rng = np.random.default_rng([config.seed, start_iteration])
    # the augmentations draw from torch's generator: each rank flips and jitters its images its own way
    torch.manual_seed(config.seed * 1_000_003 + start_iteration + (ranks.rank * 7_919 if ranks else 0))
    from .models import input_size
    from .tiling import MAGNIFICATION

    augment = Augment(config, tile_side=input_size(model) / MAGNIFICATION)
    model.to(device).train()
    net = wrap(model, device) if ranks else model  # the same parameters: the optimizer takes model's
    optimizer = _optimizer(model, config, optimizer_state)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    history: list[dict[str, float]] = []
    order: list[int] = []
    started = time.perf_counter()
    for iteration in range(start_iteration, config.iterations):
        images, targets = _tensors(_next_batch(dataset, order, rng, batch_size, ranks), augment, device)
        lr = config.learning_rate * lr_factor(iteration, config)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        value, parts = _step(net, optimizer, scaler, images, targets, iteration, config, device)
        if ranks:
            parts = mean_over_ranks({**parts, "loss": value}, device)
            value = parts.pop("loss")
        record = {"iteration": iteration + 1, "loss": value, "lr": lr,
                  "seconds": time.perf_counter() - started, **parts}
        history.append(record)
        done = iteration + 1
        stop = callback is not None and callback(record) is False
        if ranks:
            stop = any_rank(stop, device)
        net.train()  # a callback may have evaluated the model
        periodic = config.checkpoint_every and done % config.checkpoint_every == 0
        writes = ranks is None or ranks.main
        if checkpoint is not None and writes and (periodic or (stop and done < config.iterations)):
            checkpoint(done, optimizer)
        if stop:
            break
    model.eval()
    return history


@torch.no_grad()
def validation_loss(model: nn.Module, dataset: LabeledDataset, device: torch.device,
                    batch_size: int = 4) -> dict[str, float]:
    """Mean loss components on ``dataset`` without training: the model runs in train mode (the
    only mode in which torchvision returns losses) with batch-norm frozen, so neither weights
    nor batch-norm statistics change. Images without boxes count as negatives."""
    was_training = model.training
    model.train()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.eval()
    totals: dict[str, float] = {}
    batches = 0
    no_augment = Augment(TrainConfig(horizontal_flip=False, color_jitter=False, scale_jitter=False))
    try:
        for start in range(0, len(dataset), batch_size):
            images, targets = _tensors(dataset.samples[start:start + batch_size], no_augment, device)
            losses = model(images, targets)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            batches += 1
    finally:
        model.train(was_training)
    mean = {k: v / max(1, batches) for k, v in totals.items()}
    mean["loss"] = sum(mean.values())
    return mean


@torch.inference_mode()
def predict_tensors(model: nn.Module, images: Sequence[np.ndarray], device: torch.device,
                    batch_size: int = 4) -> list[dict[str, torch.Tensor]]:
    """Run ``model`` (already on ``device``) on RGB uint8 arrays in batches; returns output dicts on the CPU."""
    model.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(images), batch_size):
        chunk = [to_tensor(img, device) for img in images[start:start + batch_size]]
        with torch.autocast(device.type, enabled=device.type == "cuda"):
            result = model(chunk)
        outputs.extend({k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in r.items()}
                       for r in result)
    return outputs
