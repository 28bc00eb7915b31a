"""The evaluation job: mAP of one model on one split, stored and cached by (model, split content).

:func:`evaluation_settings` checks a request, :func:`cached_evaluation` finds a stored result,
:func:`create_evaluation_run` queues the work and :func:`run_evaluation` does it.
"""

from __future__ import annotations

from typing import Any

from ..detections import BACKGROUND
from ..detector import DetectorBox, resolve_device
from ..models import coco_class_names, resolve
from ..tiling import tiled_label, tiles_text
from ..store import ResultRecord, RunRecord, Store, hash_dataset, now
from .machinery import Log, Ticker, create_run, recorded, start, stderr_log


def evaluation_settings(store: Store, model: str, split: str = "test", device: str = "auto",
                        tiles: str = "off") -> dict[str, Any]:
    """Check and complete an evaluation of ``model`` (a model spec,
    :data:`cowdetect.models.MODEL_SPEC_HELP`) on ``split``: its label, the split's content hash
    (the cache key), the device and the tiling (:mod:`cowdetect.tiling`; part of the label, so
    tiled and untiled results are cached apart).

    Raises:
        ValueError: an unknown model or split, a split without labeled images or without
            ground-truth boxes, or a model whose classes share no name with the dataset's.
    """
    dev = resolve_device(device)
    ref = resolve(store, model, dev)
    tiles = tiles_text(tiles)
    if ref.kind in ("pretrained", "coco"):
        classes: tuple[str, ...] = coco_class_names(ref.architecture)
    elif ref.kind == "stored":
        classes = store.model(ref.model_id).classes  # type: ignore[arg-type]
    else:
        classes = store.classes()
    dataset = store.dataset(split)
    if not len(dataset):
        raise ValueError(f"split {split!r} has no labeled images to evaluate on; label some or choose another split")
    if dataset.num_boxes == 0:
        raise ValueError(f"split {split!r} has {len(dataset)} labeled images but no ground-truth boxes: mAP is "
                         f"undefined without cows to find")
    if not (set(classes) - {BACKGROUND}) & set(store.classes()):
        raise ValueError(f"model {ref.label}: its classes {list(classes)[:8]} share no name with the dataset's "
                         f"{list(store.classes())}; nothing to score")
    return {"model": ref.pinned, "model_label": tiled_label(ref.label, tiles), "model_id": ref.model_id,
            "split": split, "dataset_hash": hash_dataset(dataset), "device": str(dev), "tiles": tiles}


def cached_evaluation(store: Store, settings: dict[str, Any]) -> ResultRecord | None:
    """The stored result for exactly these settings (same model, same split content), or None."""
    return store.cached_result(settings["model_label"], settings["split"], settings["dataset_hash"],
                               settings["model_id"], settings.get("tiles", "off"))


def create_evaluation_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue an evaluation with checked ``settings`` (see :func:`evaluation_settings`); returns its id."""
    return create_run(store, "evaluate", settings, len(store.dataset(settings["split"])))


def run_evaluation(store: Store, run_id: int, log: Log | None = None) -> RunRecord:
    """Run evaluation run ``run_id``: predict the split's images (progress about once a second,
    stop honoured), score them, and store the result (its id in the run's metrics)."""
    log = log or stderr_log
    run = start(store, run_id, "evaluate", log)
    if run.status == "stopped":
        return run
    settings = run.params
    with recorded(store, run_id):
        dataset = store.dataset(settings["split"])
        ref = resolve(store, settings["model"], settings["device"])
        box = DetectorBox.open(ref, settings["device"], classes=store.classes(), weights_dir=store.weights_dir)
        log(f"run {run_id}: evaluating {settings['model_label']} on {len(dataset)} {settings['split']} images")
        ticker = Ticker(store, run_id)
        try:
            predictions = box.predict_dataset(
                dataset, progress=ticker.poll, tiles=settings.get("tiles", "off"))
        except InterruptedError as exc:
            store.update_run(run_id, status="stopped", error=str(exc), finished_at=now())
            return store.run(run_id)
        result = box.evaluate(dataset, predictions=predictions)
        dataset_hash = hash_dataset(dataset)  # of the data evaluated, which may have changed since
        result_id = store.add_result(settings["model_label"], settings["split"], dataset_hash, result.as_dict(),
                                     settings["model_id"], settings.get("tiles", "off"))
        store.update_run(run_id, status="done", iteration=len(dataset), metrics={"result_id": result_id,
                         "map": result.map, "map_50": result.map_50}, finished_at=now())
        log(f"run {run_id}: mAP {result.map:.4f}, mAP50 {result.map_50:.4f}")
        return store.run(run_id)
