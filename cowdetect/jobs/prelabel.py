"""The pre-label job: a model's boxes for every not-yet-labeled image of a split, stored as
suggestions (never as ground truth), each image with an uncertainty score for "next to label".

:func:`prelabel_settings` checks a request, :func:`create_prelabel_run` queues it and
:func:`run_prelabel` does it: it pages through image ids (constant memory with 10,000s of
images), predicts a small batch at a time, and on resume skips the images this run already
gave suggestions, so a Stop or a kill -9 loses at most the batch in flight.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterator

import numpy as np

from ..detections import BACKGROUND, Detections
from ..detector import DetectorBox, resolve_device
from ..images import load_image
from ..models import ModelRef, coco_class_names, coco_weights_available, resolve
from ..store import ImageRecord, RunRecord, Store, check_split, now
from ..cluster import job_cluster
from ..tiling import tiled_label, tiles_text
from .machinery import Log, Ticker, create_run, recorded, start, stderr_log

# Images predicted together: small, so memory stays flat and a Stop is honoured within a batch.
BATCH = 4
# Boxes scoring below this do not count towards the uncertainty: torchvision's detectors stop at
# 0.05 themselves, SSD at 0.01; one floor makes the scores of both comparable.
UNCERTAINTY_FLOOR = 0.05


def uncertainty(scores: Any, floor: float = UNCERTAINTY_FLOOR) -> float:
    """How unsure a detector is about one image: the sum over its boxes scoring at least ``floor``
    of ``1 - |2 s - 1|`` (a box at 0.5 counts 1, one at 0.05 or 0.95 counts 0.1).

    Many middling boxes (a half-hidden cow, a cow-coloured rock) make an image worth labeling
    first: a person's boxes there teach the model most. Confident boxes, or none at all, count
    almost nothing. It lives beside the job that writes it; :meth:`Store.to_label` only sorts by
    the stored number.

    Args:
        scores: the raw scores (N,) of the model's boxes for one image, in [0, 1].
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    s = s[np.isfinite(s) & (s >= floor)]
    return float(np.sum(1.0 - np.abs(2.0 * np.clip(s, 0.0, 1.0) - 1.0)))


def _weights_problem(ref: ModelRef) -> str | None:
    """Why a COCO model cannot be opened on this machine (offline), or None."""
    if ref.kind not in ("pretrained", "coco") or coco_weights_available(ref.architecture):
        return None
    return (f"model {ref.label}: its COCO weights are not on this machine and cannot be downloaded here; "
            f"train a version first, or choose another model")


def _model_classes(store: Store, ref: ModelRef) -> tuple[str, ...]:
    if ref.kind in ("pretrained", "coco"):
        return coco_class_names(ref.architecture)
    if ref.kind == "stored":
        return store.model(ref.model_id).classes  # type: ignore[arg-type]
    return store.classes()


def prelabel_settings(store: Store, model: str = "active", split: str | None = None, unlabeled: bool = False,
                      score_threshold: float = 0.5, device: str = "auto", tiles: str = "off",
                      ray: str | None = None, workers: int | None = None, threads: int = 1,
                      gpu_fraction: float | None = None) -> dict[str, Any]:
    """Check and complete a pre-label request before any work: ``model`` (a model spec,
    :data:`cowdetect.models.MODEL_SPEC_HELP`) suggests boxes scoring at least ``score_threshold``
    for the not-labeled images of ``split``, or of every split with ``unlabeled=True``. With ``ray``
    (an address, or 'local'; :func:`cowdetect.cluster.cluster_settings` for it and the rest) the
    images are predicted on a Ray cluster, :data:`CHUNK` per task; only this job writes the store.

    Raises:
        ValueError: neither or both of ``split`` and ``unlabeled``, an unknown split, a threshold
            outside (0, 1), no image to pre-label, a model spec that names nothing, a COCO model
            whose weights are not on this machine, or a model sharing no class with the dataset.
    """
    if (split is None) == (not unlabeled):
        raise ValueError(f"split: expected a split name or unlabeled=True (not both), got split={split!r}, "
                         f"unlabeled={unlabeled!r}")
    if split is not None:
        check_split(split)
    if isinstance(score_threshold, bool) or not isinstance(score_threshold, numbers.Real) \
            or not math.isfinite(score_threshold) or not 0 < score_threshold < 1:
        raise ValueError(f"score_threshold: expected a number between 0 and 1 (exclusive), got {score_threshold!r}")
    tiles = tiles_text(tiles)
    cluster = None if ray is None else job_cluster(store, ray, workers, threads, gpu_fraction)
    dev = resolve_device(device)
    where = f"split {split!r}" if split is not None else "the data folder"
    if not store.count_images(split, labeled=False):
        raise ValueError(f"{where} has no unlabeled images to pre-label ({store.count_images(split)} images, "
                         f"all labeled)")
    ref = resolve(store, model, dev)
    problem = _weights_problem(ref)
    if problem:
        raise ValueError(problem)
    if not (set(_model_classes(store, ref)) - {BACKGROUND}) & set(store.classes()):
        raise ValueError(f"model {ref.label}: its classes share no name with the dataset's "
                         f"{list(store.classes())}; it would suggest nothing")
    return {"model": ref.pinned, "model_label": tiled_label(ref.label, tiles), "model_id": ref.model_id,
            "split": split, "score_threshold": float(score_threshold), "device": str(dev), "tiles": tiles,
            # on Ray the run claims the 'ray' queue, not this machine's device, which only opens the model;
            # no such keys without Ray, so the rows of runs before Ray stay equal
            **({"cluster": cluster, "device": "ray", "open_device": str(dev)} if cluster is not None else {})}


def create_prelabel_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a pre-label run with checked ``settings`` (see :func:`prelabel_settings`); returns its id."""
    return create_run(store, "prelabel", settings, store.count_images(settings["split"], labeled=False))


def _batches(store: Store, split: str | None, size: int = BATCH) -> Iterator[list[ImageRecord]]:
    """The not-labeled images of ``split`` in id order, ``size`` at a time, read one id after the
    other (images labeled meanwhile are left out, none is skipped by a shifted offset)."""
    last, batch = 0, []
    while (record := store.next_unlabeled(last, split)) is not None and record.id > last:
        last = record.id
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _suggest(box: DetectorBox, store: Store, records: list[ImageRecord], tiles: str) -> list[Detections]:
    """The model's raw boxes (down to its own floor, xyxy px) for ``records``, named in the store's classes."""
    vocab = store.class_names()
    return [d.with_class_names(vocab) for d in _detect(box, [load_image(r.path, name=str(r.id)) for r in records],
                                                        tiles)]


def _detect(box: DetectorBox, arrays: list[Any], tiles: str) -> list[Detections]:
    """The model's raw boxes (down to its own floor, xyxy px, its own class names) for RGB ``arrays``."""
    return box.detect_arrays(arrays, BATCH, tiles)


def _store(store: Store, record: ImageRecord, raw: Detections, settings: dict[str, Any], run_id: int) -> int:
    """Keep one image's boxes at or above the threshold as its suggestion set; returns how many."""
    threshold = settings["score_threshold"]
    return store.set_suggestions(record.id, raw.above(threshold), source=settings["model_label"],
                                 model_id=settings["model_id"], run_id=run_id, score_threshold=threshold,
                                 uncertainty=uncertainty(raw.score if raw.score is not None else []))


def _stop(store: Store, run_id: int, done: int, counts: dict[str, int]) -> RunRecord:
    store.update_run(run_id, status="stopped", iteration=done, metrics=counts, finished_at=now(),
                     error=f"stopped after {done} images; resume to go on")
    return store.run(run_id)


def run_prelabel(store: Store, run_id: int, log: Log | None = None) -> RunRecord:
    """Run pre-label run ``run_id``: suggestions for each target image (progress about once a
    second, Stop honoured between batches). Images that already hold this run's suggestions
    (a resumed run) are counted, not predicted again. Metrics: ``images`` given suggestions and
    their ``boxes``, over the whole run."""
    log = log or stderr_log
    run = start(store, run_id, "prelabel", log)
    if run.status == "stopped":
        return run
    settings = run.params
    with recorded(store, run_id):
        device = settings.get("open_device", settings["device"])
        ref = resolve(store, settings["model"], device)
        box = DetectorBox.open(ref, device, classes=store.classes(), weights_dir=store.weights_dir)
        total = store.count_images(settings["split"], labeled=False)
        log(f"run {run_id}: pre-labeling {total} images with {settings['model_label']}")
        if settings.get("cluster"):
            return _prelabel_on_ray(store, run_id, settings, box, ref, total, log)
        ticker, done, counts = Ticker(store, run_id), 0, {"images": 0, "boxes": 0}
        for batch in _batches(store, settings["split"]):
            todo = _not_done(store, run_id, batch, counts)
            for record, raw in zip(todo, _suggest(box, store, todo, settings["tiles"]) if todo else []):
                counts["boxes"] += _store(store, record, raw, settings, run_id)
                counts["images"] += 1
            done += len(batch)
            if not ticker.poll(done, max(total, done)):
                return _stop(store, run_id, done, counts)
        return _done(store, run_id, done, counts, log)


def _not_done(store: Store, run_id: int, batch: list[ImageRecord], counts: dict[str, int]) -> list[ImageRecord]:
    """The images of ``batch`` this run has not given suggestions yet (a resumed run); those it has
    are added to ``counts``."""
    todo = []
    for record in batch:
        earlier = store.suggestions(record.id)
        if earlier is not None and earlier.run_id == run_id:
            counts["images"], counts["boxes"] = counts["images"] + 1, counts["boxes"] + len(earlier.boxes)
        else:
            todo.append(record)
    return todo


def _done(store: Store, run_id: int, done: int, counts: dict[str, int], log: Log) -> RunRecord:
    store.update_run(run_id, status="done", iteration=done, total=done, metrics=counts, finished_at=now())
    log(f"run {run_id}: {counts['boxes']} boxes suggested on {counts['images']} images")
    return store.run(run_id)


# Images per Ray task: enough to pay for a task's start, few enough that a Stop or a dead worker loses little.
CHUNK = 16


def _prelabel_on_ray(store: Store, run_id: int, settings: dict[str, Any], box: DetectorBox, ref: ModelRef,
                     total: int, log: Log) -> RunRecord:
    """The pre-label run on a Ray cluster: :data:`CHUNK` images per task (their files' bytes), the
    boxes written here as each task returns; Stop cancels the tasks in flight."""
    from .. import cluster as clusters

    with clusters.connect(**settings["cluster"]) as cluster:
        log(f"run {run_id}: on Ray ({cluster.address or 'this machine'}, {cluster.slots()} tasks at once)")
        driver = _RayPrelabel(store, run_id, settings, box, ref, total, cluster)
        if not clusters.run_tasks(cluster, cluster.remote(detect_on_worker), driver.items(),
                                  on_result=driver.on_result, on_error=driver.on_error, on_poll=driver.on_poll):
            return _stop(store, run_id, driver.done, driver.counts)
    return _done(store, run_id, driver.done, driver.counts, log)


class _RayPrelabel:
    """The driver's side of a pre-label run on Ray: the chunks it sends, the suggestions it writes."""

    def __init__(self, store: Store, run_id: int, settings: dict[str, Any], box: DetectorBox, ref: ModelRef,
                 total: int, cluster: Any) -> None:
        from .. import cluster as clusters

        self.store, self.run_id, self.settings, self.box, self.total = store, run_id, settings, box, total
        self.cluster, self.ticker = cluster, Ticker(store, run_id)
        self.counts, self.done = {"images": 0, "boxes": 0}, 0
        self.records: dict[int, list[ImageRecord]] = {}
        # the box as opened here (with the dataset's classes), not its file; an ONNX export goes as it is
        self.model = cluster.put(clusters.model_payload(box, ref.checkpoint if ref.kind == "onnx" else None,
                                                        store.inside("tmp")))

    def items(self) -> Iterator[tuple[int, tuple]]:
        """(chunk number, task arguments) per :data:`CHUNK` images not pre-labeled by this run yet."""
        for key, batch in enumerate(_batches(self.store, self.settings["split"], CHUNK)):
            todo = _not_done(self.store, self.run_id, batch, self.counts)
            self.done += len(batch) - len(todo)
            if todo:
                self.records[key] = todo
                yield key, (self.model, self.cluster.device, [r.path.read_bytes() for r in todo],
                            [r.id for r in todo], self.settings["tiles"])

    def on_result(self, key: int, found: list[tuple[Any, Any, Any]]) -> None:
        vocab = self.store.class_names()
        for record, (xyxy, class_id, score) in zip(self.records.pop(key), found):
            raw = Detections(xyxy, class_id, score, self.box.class_names).with_class_names(vocab)
            self.counts["boxes"] += _store(self.store, record, raw, self.settings, self.run_id)
            self.counts["images"] += 1
            self.done += 1

    def on_error(self, key: int, reason: str) -> None:
        raise ValueError(reason)  # names the image (as a run on this machine does): the run fails, resumable

    def on_poll(self) -> bool:
        total = max(self.total, self.done)
        # never "the end" here (Ticker writes then at once): the last chunk's boxes may still come
        return self.ticker.poll(self.done, total, final=False)


def detect_on_worker(model: tuple[bytes, str], device: str, images: list[bytes], ids: list[int], tiles: str
                     ) -> list[tuple[Any, Any, Any]]:
    """A Ray task: the model's raw boxes (xyxy px, class ids in the model's names, scores) for each
    image (an image file's bytes; ``ids`` the store's, which messages name). Touches no data folder."""
    from .. import cluster as clusters

    box = clusters.open_model(*model, device)
    found = _detect(box, [load_image(data, name=str(i)) for data, i in zip(images, ids)], tiles)
    return [(d.xyxy, d.class_id, d.score) for d in found]
