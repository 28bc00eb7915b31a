"""The training job: fine-tune a detector, checkpointing, validating, and saving a model version.

:func:`training_settings` checks a request and :func:`create_training_run` queues it;
:func:`run_training` runs it (a worker process, or ``python -m cowdetect train`` in the
foreground) as the named steps of :class:`TrainingJob`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .. import distributed, models
from ..accounts import run_action
from ..config import RUN_DEFAULTS, TrainConfig, from_dict, to_dict
from ..data import LabeledDataset
from ..detector import DetectorBox, read_checkpoint_meta, resolve_device
from ..distributed import Ranks
from ..engine import validation_loss
from ..models import check_model_name, resolve
from ..store import ACTIVE, RunRecord, Store, hash_dataset, now
from .machinery import Log, create_run, fail, recorded, start, stderr_log

# Fewer labeled training images than this cannot teach a detector anything useful.
MIN_TRAIN_IMAGES = 5
SCORES = ("map", "map_50", "map_75")


def training_settings(store: Store, base: str = "pretrained", iterations: int | None = None,
                      batch_size: int | None = None, learning_rate: float | None = None,
                      checkpoint_every: int | None = None, eval_every: int | None = None,
                      patience: int | None = None, horizontal_flip: bool | None = None,
                      color_jitter: bool | None = None, scale_jitter: bool | None = None,
                      freeze_backbone: bool = False, backbone_lr: float | None = None,
                      tile_crops: float | None = None, keep_start: float | None = None,
                      train_split: str = "train", val_split: str = "val",
                      test_split: str = "test", device: str = "auto", name: str | None = None,
                      seed: int = 0, nproc: int = 1, nnodes: int = 1) -> dict[str, Any]:
    """Check and complete the settings of a training run. None takes the default of the base's
    architecture (:data:`cowdetect.config.TRAIN_DEFAULTS`, :data:`~cowdetect.config.RUN_DEFAULTS`).

    ``base``: the model to start from, a model spec (:data:`cowdetect.models.MODEL_SPEC_HELP`).
    ``nproc`` processes on each of ``nnodes`` machines train together (:mod:`cowdetect.distributed`);
    ``batch_size`` is the batch of all of them together, shared out equally.

    Raises:
        ValueError: an unknown base or split, a bad setting or name, or too few labeled
            training images (the message says how many more are needed).
    """
    dev = resolve_device(device)
    ref = resolve(store, base, dev)
    if ref.kind == "onnx":  # refused now, not by the worker after the run is queued
        raise ValueError(f"base: {ref.label} is an ONNX export, for inference only; train its source model "
                         f"(a .pt checkpoint or stored version) and export again")
    if name is not None:
        check_model_name(name)
    runs = {k: RUN_DEFAULTS[k] if v is None else v for k, v in
            {"checkpoint_every": checkpoint_every, "eval_every": eval_every, "patience": patience}.items()}
    if any(not isinstance(v, int) or v < 0 for v in runs.values()):
        raise ValueError(f"checkpoint_every, eval_every and patience: expected 0 or more, got {runs}")
    config = TrainConfig.for_architecture(
        ref.architecture, iterations=iterations, batch_size=batch_size, learning_rate=learning_rate,
        horizontal_flip=horizontal_flip, color_jitter=color_jitter, scale_jitter=scale_jitter,
        checkpoint_every=runs["checkpoint_every"], freeze_backbone=freeze_backbone, backbone_lr=backbone_lr,
        tile_crops=tile_crops, keep_start=keep_start, seed=seed)
    # SSD's batch norm trains on each process's images (its last feature map is 1x1): 2 at least
    distributed.check_processes(nproc, nnodes, dev, config.batch_size,
                                2 if models.get_architecture(ref.architecture).family == "ssd" else 1)
    dataset = store.dataset(train_split)
    if len(dataset) < MIN_TRAIN_IMAGES:
        raise ValueError(f"split {train_split!r} has {len(dataset)} labeled images; label at least "
                         f"{MIN_TRAIN_IMAGES - len(dataset)} more (the minimum is {MIN_TRAIN_IMAGES})")
    dataset.require_nonempty("train")
    return {"base": ref.pinned, "base_label": ref.label, "parent_id": ref.model_id,
            "architecture": ref.architecture, "device": str(dev), "train_split": train_split,
            "val_split": val_split, "test_split": test_split, "eval_every": runs["eval_every"],
            "patience": runs["patience"], "name": name, "config": to_dict(config), "nproc": nproc, "nnodes": nnodes}


def create_training_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a training run with checked ``settings`` (see :func:`training_settings`); returns its id."""
    return create_run(store, "train", settings, settings["config"]["iterations"])


def seconds_per_iteration(store: Store, architecture: str, batch_size: int, device: str,
                          processes: int = 1) -> float | None:
    """Measured seconds per iteration of earlier runs with this architecture, batch size, device and
    number of processes (the median over their progress points), or None when there is none. The
    Train page's estimate: it measures nothing new, so it costs the page no work."""
    rates = []
    for run in store.runs("train"):
        params = run.params
        if (params.get("architecture"), params.get("config", {}).get("batch_size"), params.get("device"),
                distributed.processes(params)) != (architecture, batch_size, device, processes):
            continue
        points = store.points(run.id)
        if len(points) >= 2 and points[-1]["seconds"] > points[0]["seconds"]:
            rates.append((points[-1]["seconds"] - points[0]["seconds"]) /
                         max(1, points[-1]["iteration"] - points[0]["iteration"]))
    return sorted(rates)[len(rates) // 2] if rates else None


def progress(store: Store, run_id: int) -> dict[str, Any]:
    """What a progress display needs: the run, iterations/s, seconds left, train and val points."""
    run = store.run(run_id)
    points = store.points(run_id)
    recent = [p for p in points if p["iteration"] > run.checkpoint_iteration or not run.checkpoint_iteration]
    rate = 0.0
    if len(recent) >= 2 and recent[-1]["seconds"] > recent[0]["seconds"]:
        rate = (recent[-1]["iteration"] - recent[0]["iteration"]) / (recent[-1]["seconds"] - recent[0]["seconds"])
    left = (run.total - run.iteration) / rate if rate > 0 else None
    return {"run": run, "points": points, "val_points": store.points(run_id, "val"), "rate": rate,
            "seconds_left": left}


def run_training(store: Store, run_id: int, log: Log | None = None, log_every: float = 5.0,
                 rdzv_endpoint: str | None = None, rdzv_timeout: int = distributed.RDZV_TIMEOUT) -> RunRecord:
    """Run (or resume) training run ``run_id`` to its end; the job function of workers and the CLI.

    Writes progress points every ~second, a checkpoint every ``checkpoint_every`` iterations
    and on stop, validation loss and mAP every ``eval_every`` iterations (keeping the best
    checkpoint), and at the end a model version with the before → after test mAP.
    Returns the run's final row. Errors end the run as ``failed`` with the reason, and are raised.
    A run on several processes goes through torchrun (:func:`train_on_ranks`); on several machines
    this one is node 0 and hosts the rendezvous at ``rdzv_endpoint`` (HOST:PORT).
    """
    log = log or stderr_log
    run = start(store, run_id, "train", log)
    if run.status == "stopped":
        return run
    with recorded(store, run_id):
        try:
            if distributed.processes(run.params) > 1:
                return train_on_ranks(store, run, log, log_every, rdzv_endpoint, rdzv_timeout)
            return TrainingJob(store, run, log, log_every).run()
        except torch.cuda.OutOfMemoryError as exc:
            raise RuntimeError(f"the GPU ran out of memory ({str(exc).splitlines()[0]}); try a smaller batch size "
                               f"or image size. Checkpoints so far are kept.") from exc


def train_on_ranks(store: Store, run: RunRecord, log: Log, log_every: float, endpoint: str | None,
                   timeout: int) -> RunRecord:
    """The owner's part of a run on several processes: start torchrun, wait, read how it ended.

    Rank 0 writes the end (done, stopped, failed). A run whose torchrun ended before that (a rank
    killed, a machine gone) is marked interrupted here: a resume restarts every rank from the last
    checkpoint. A failure is raised again with the rank's message."""
    nproc, nnodes = int(run.params.get("nproc", 1)), int(run.params.get("nnodes", 1))
    distributed.check_launch(nnodes, 0, endpoint, joining=False)
    if nnodes > 1:
        for node in range(1, nnodes):
            log(f"run {run.id}: waiting up to {timeout} s for machine {node}; run there: "
                f"{distributed.join_command(run.id, node, str(endpoint), store.data_dir)}")
    warning = distributed.oversubscribed(nproc, resolve_device(run.params["device"]))
    if warning:
        log(f"run {run.id}: {warning}")
    start_at = run.checkpoint_iteration if run.checkpoint else 0
    store.update_run(run.id, iteration=start_at)  # rank 0 writes past it once a step is done
    code = distributed.run_torchrun(distributed.torchrun_command(run.id, store.data_dir, nproc, nnodes, 0, endpoint,
                                                                 timeout, log_every), nproc)
    after = store.run(run.id)
    if after.status == "failed":
        raise RuntimeError(after.error or f"torchrun ended with status {code}")
    if after.status in ACTIVE:
        status, message = ending(code, start_at, after.iteration, after.checkpoint_iteration)
        store.update_run(run.id, status=status, error=message, finished_at=now())
        if status == "failed":
            raise RuntimeError(message)
        log(f"run {run.id}: {message}")
    return store.run(run.id)


def ending(code: int, start_at: int, reached: int, checkpoint: int) -> tuple[str, str]:
    """How a run on several processes ended when torchrun returned before rank 0 wrote the end:
    (status, message). No step done → failed (the processes could not start, and a resume would fail
    the same way); else interrupted (a process killed, a machine lost), resumed from the checkpoint."""
    if reached <= start_at:
        return "failed", (f"the training processes ended before the first step (torchrun exit status {code}); "
                          "the log above (the worker log for a queued run) has each process's error")
    where = f"the checkpoint at iteration {checkpoint}" if checkpoint else "the start (no checkpoint yet)"
    return "interrupted", (f"a training process ended unexpectedly (torchrun exit status {code}); resume "
                           f"continues from {where}")


def join_training(store: Store, run_id: int, node_rank: int, endpoint: str | None,
                  timeout: int = distributed.RDZV_TIMEOUT, log_every: float = 5.0) -> int:
    """Take part in run ``run_id``, started on another machine (node 0), as machine ``node_rank``:
    its ``nproc`` ranks here, none of which writes. Returns torchrun's exit status (0: done).
    The data folder must hold the run and its data (a shared folder, or a copy made after the run
    was started; a resume needs its checkpoints too)."""
    run = store.run(run_id)
    store.require(run_action("train"))  # its processes train the run as the run's owner
    if run.kind != "train":
        raise ValueError(f"run {run_id} is a {run.kind} run, not a training run")
    if run.status == "done":  # nothing would host it: torchrun would wait rdzv_timeout for node 0
        raise ValueError(f"run {run_id} is done; there is nothing to join (start a new run to go further)")
    nnodes = int(run.params.get("nnodes", 1))
    if nnodes < 2:
        raise ValueError(f"run {run_id} trains on one machine: there is nothing to join")
    distributed.check_launch(nnodes, node_rank, endpoint, joining=True)
    if node_rank >= nnodes:
        raise ValueError(f"node_rank: expected 1 to {nnodes - 1} (run {run_id} trains on {nnodes} machines), "
                         f"got {node_rank}")
    distributed.check_endpoint(endpoint, node_rank)
    nproc = int(run.params.get("nproc", 1))
    return distributed.run_torchrun(distributed.torchrun_command(run_id, store.data_dir, nproc, nnodes, node_rank,
                                                                 endpoint, timeout, log_every), nproc)


def run_rank(store: Store, run_id: int, ranks: Ranks, device: torch.device, log_every: float = 5.0) -> None:
    """One rank of a run on several processes (:func:`cowdetect.distributed.main`; the owner took the
    run and its device). Every rank first checks that all loaded the same run, checkpoint and train
    split (:func:`cowdetect.distributed.same_start`). Rank 0 runs the whole job and alone writes;
    the others only train and print their own error. A rank stopped by torchrun, or whose peer is
    gone (a failed collective), writes nothing: the owner decides how the run ended (:func:`ending`)."""
    run = store.run(run_id)
    train_set = store.dataset(run.params["train_split"])
    start_at = run.checkpoint_iteration if run.checkpoint else 0
    try:  # before any write: a rank of another run, or of a stale copy, must not touch this row
        distributed.same_start(distributed.fingerprint(run_id, start_at, len(train_set), hash_dataset(train_set)),
                               device)
        job = TrainingJob(store, run, stderr_log if ranks.main else _quiet, log_every, ranks, device)
        if ranks.main:
            job.run()
        else:
            job.train()
    except Exception as exc:
        if distributed.peer_lost(exc):
            raise
        message = (f"a process waited longer than {distributed.COLLECTIVE_TIMEOUT} for the others (rank 0 "
                   f"validating or evaluating a large split?): {exc}") if distributed.timed_out(exc) else str(exc)
        # only rank 0 writes: another machine's rank would write its own copy of the folder, unread
        if ranks.main and store.run(run_id).status in ACTIVE:  # the first error is the one to read
            fail(store, run_id, message)
        elif not ranks.main:
            print(f"process {ranks.rank}: error: {message}", file=sys.stderr, flush=True)
        raise


def _quiet(message: str) -> None:
    """The log of ranks other than 0: rank 0 says it all once."""


def _scores(result: Any) -> dict[str, float]:
    return {k: getattr(result, k) for k in SCORES}


class TrainingJob:
    """One training run: its state as attributes, its work as named steps (:meth:`run`)."""

    def __init__(self, store: Store, run: RunRecord, log: Log, log_every: float, ranks: Ranks | None = None,
                 device: torch.device | None = None) -> None:
        self.store, self.run_id, self.log, self.log_every = store, run.id, log, log_every
        self.settings = run.params
        # several processes (torchrun): this one's rank and GPU; only rank 0 ("main") writes
        self.ranks, self.main = ranks, ranks is None or ranks.main
        self.device = str(device) if device is not None else self.settings["device"]
        self.config = from_dict(TrainConfig, self.settings["config"])
        self.folder = store.inside(Path("runs") / f"run-{run.id}")
        self.metrics = dict(run.metrics)
        self.best = dict(self.metrics.get("best", {"map_50": -1.0, "iteration": 0}))
        self.train_set = store.dataset(self.settings["train_split"])
        self.val_set = self._scored_split("val_split")
        self.test_set = self._scored_split("test_split")
        self.pending: list[dict[str, float]] = []
        self.last_flush, self.last_log, self.started = time.monotonic(), 0.0, time.monotonic()
        self.stop, self.bad_evals, self.start_iteration = False, 0, 0
        self.box, self.optimizer_state = self.open_model(run)

    def _scored_split(self, key: str) -> LabeledDataset | None:
        """A split with ground-truth boxes to score on, else None (mAP is undefined without cows)."""
        split = self.settings[key]
        dataset = self.store.dataset(split) if split else None
        return dataset if dataset is not None and dataset.num_boxes else None

    def open_model(self, run: RunRecord) -> tuple[DetectorBox, dict | None]:
        """The checkpoint to resume from, else the base model (with its test mAP before training)."""
        if run.checkpoint and run.checkpoint_iteration:
            checkpoint = self.store.inside(run.checkpoint)
            self.start_iteration = run.checkpoint_iteration
            if self.main:
                self.store.drop_points_after(self.run_id, self.start_iteration)
            self.log(f"run {self.run_id}: resuming from iteration {self.start_iteration}")
            return (DetectorBox.load(checkpoint, device=self.device),
                    read_checkpoint_meta(checkpoint)["optimizer"])
        # rank 0 first: opening SSD's COCO weights may convert and write them once
        with distributed.main_first(self.ranks):
            ref = resolve(self.store, self.settings["base"], self.device)
            box = DetectorBox.open(ref, self.device, classes=self.store.classes(),
                                   weights_dir=self.store.weights_dir, seed=self.config.seed)
        if not self.main:
            return box, None
        self.store.drop_points_after(self.run_id, 0)
        # "before" is the base model as named (the COCO SSD with its score group), so it is
        # measured before WiSE-FT replaces the head below
        if self.test_set is not None and "before" not in self.metrics:
            self.log(f"run {self.run_id}: measuring mAP on {self.settings['test_split']} before training")
            self.metrics["before"] = _scores(box.evaluate(self.test_set))
            self.store.update_run(self.run_id, metrics=self.metrics)
        if self.config.keep_start:  # WiSE-FT mixes these weights back in at the end, also after a resume
            if box.classes != self.train_set.classes:
                box.set_classes(self.train_set.classes)
            box.save(self.folder / "start.pt", meta={"run_id": self.run_id})
        self.log(f"run {self.run_id}: starting from {self.settings['base_label']}")
        return box, None

    def run(self) -> RunRecord:
        """train → (stopped: keep the checkpoint) or (validate the final weights → save the version)."""
        world = f" over {self.ranks.world} processes" if self.ranks else ""
        self.log(f"run {self.run_id}: training {self.box.architecture} on {len(self.train_set)} images, iterations "
                 f"{self.start_iteration}→{self.config.iterations}, batch {self.config.batch_size}{world}, "
                 f"lr {self.config.learning_rate}, device {self.box.device}")
        reached = self.train()
        if self.stop and reached < self.config.iterations and "early_stopped_at" not in self.metrics:
            self.store.update_run(self.run_id, status="stopped", iteration=reached, metrics=self.metrics,
                                  finished_at=now())
            self.log(f"run {self.run_id}: stopped at iteration {reached}; checkpoint at "
                     f"{self.store.run(self.run_id).checkpoint_iteration}")
            return self.store.run(self.run_id)
        every = self.settings["eval_every"]
        if self.val_set is not None and every and reached % every and not self.stop:
            self.validate(reached)  # the final weights compete for "best" too
        return self.save_version(reached)

    def train(self) -> int:
        """The training loop with this job's callbacks; returns the iteration reached."""
        # the job mixes the start weights in itself (save_version): into the best weights, after resumes
        config = dataclasses.replace(self.config, keep_start=0.0)
        # the loop checkpoints on rank 0 only; the other ranks' iterations are not recorded
        history = self.box.train(self.train_set, config=config, callback=self.on_iteration if self.main else None,
                                 checkpoint_dir=self.folder, start_iteration=self.start_iteration,
                                 optimizer_state=self.optimizer_state,
                                 on_checkpoint=self.on_checkpoint if self.main else None)
        reached = int(history[-1]["iteration"]) if history else self.start_iteration
        if self.pending:
            self.flush(reached)
        self.metrics["seconds"] = round(time.monotonic() - self.started + float(self.metrics.get("seconds", 0.0)), 1)
        return reached

    def on_iteration(self, record: dict[str, float]) -> bool:
        """After each iteration: buffer the point, flush about once a second, validate when due."""
        iteration = int(record["iteration"])
        self.pending.append({k: round(v, 6) for k, v in record.items()})
        if time.monotonic() - self.last_flush >= 1.0 or iteration == self.config.iterations:
            self.flush(iteration)
        every = self.settings["eval_every"]
        if self.val_set is not None and every and iteration % every == 0:
            self.validate(iteration)
        return not self.stop

    def flush(self, iteration: int) -> None:
        """Write the buffered points and the iteration; log now and then; read the stop request."""
        clock = time.monotonic()
        if self.pending and (clock - self.last_log >= self.log_every or iteration == self.config.iterations):
            rate = (iteration - self.start_iteration) / max(1e-9, clock - self.started)
            self.log(f"iter {iteration}/{self.config.iterations}  loss {self.pending[-1]['loss']:.4f}  "
                     f"lr {self.pending[-1]['lr']:.5f}  {rate:.2f} it/s  "
                     f"eta {(self.config.iterations - iteration) / max(rate, 1e-9):.0f}s")
            self.last_log = clock
        self.store.add_points(self.run_id, self.pending)
        self.pending.clear()
        self.store.update_run(self.run_id, iteration=iteration)
        self.last_flush = time.monotonic()
        if self.store.run(self.run_id).stop_requested:
            self.stop = True

    def validate(self, iteration: int) -> None:
        """Validation loss and mAP; keep the best weights; stop early after ``patience`` misses."""
        assert self.val_set is not None
        loss = validation_loss(self.box.model, self.val_set, self.box.device)["loss"]
        result = self.box.evaluate(self.val_set)
        self.store.add_points(self.run_id, [{"iteration": iteration, "val_loss": loss, "val_map": result.map,
                                             "val_map_50": result.map_50}], kind="val")
        self.log(f"run {self.run_id}: iteration {iteration} val loss {loss:.4f} val mAP50 {result.map_50:.4f}")
        if result.map_50 > self.best["map_50"]:
            self.best.update(map_50=result.map_50, map=result.map, iteration=iteration)
            self.box.save(self.folder / "best.pt", meta={"iteration": iteration, "val_map_50": result.map_50})
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        self.metrics["best"] = self.best
        patience = self.settings["patience"]
        if patience and self.bad_evals >= patience:
            self.log(f"run {self.run_id}: early stop, no better val mAP in {patience} evaluations")
            self.metrics["early_stopped_at"] = iteration
            self.stop = True
        self.store.update_run(self.run_id, metrics=self.metrics)

    def on_checkpoint(self, iteration: int, path: Path) -> None:
        self.store.update_run(self.run_id, checkpoint=path.relative_to(self.store.data_dir).as_posix(),
                              checkpoint_iteration=iteration)

    def save_version(self, reached: int) -> RunRecord:
        """The best (else final) weights become a model version; then its test mAP, filed under it.
        A run killed after saving its version and then resumed files no second version."""
        box = self.best_box()
        if self.test_set is not None:
            after = box.evaluate(self.test_set)
            self.metrics["after"] = _scores(after)
        record = next((m for m in self.store.models() if m.params.get("run_id") == self.run_id), None)
        if record is None:
            stem = self.settings.get("name") or f"{box.architecture.split('_')[0]}-run{self.run_id}"
            final = box.save(self.folder / "final.pt", meta={"run_id": self.run_id, "iterations": reached})
            record = self.store.add_model(stem, box.architecture, box.classes, final, self.settings["parent_id"],
                                          self._version_params(reached, box), unique=True)
            final.unlink(missing_ok=True)
        if self.test_set is not None:  # filed under the version's id: it exists now
            self.store.add_result(record.label, self.settings["test_split"],
                                  hash_dataset(self.test_set), after.as_dict(), record.id)
        self.store.update_run(self.run_id, status="done", iteration=reached, model_id=record.id,
                              metrics=self.metrics, finished_at=now())
        self.log(f"run {self.run_id}: saved model version {record.label}; {moo(self.metrics)}")
        return self.store.run(self.run_id)

    def best_box(self) -> DetectorBox:
        """The weights with the best validation mAP when validation ran, else the final ones; with
        ``keep_start``, averaged with the weights training started from (WiSE-FT)."""
        best_path = self.folder / "best.pt"
        box = DetectorBox.load(best_path, device=self.device) \
            if best_path.is_file() and self.best["map_50"] >= 0 else self.box
        start = self.folder / "start.pt"
        if self.config.keep_start and start.is_file():
            state = DetectorBox.load(start, device="cpu").model.state_dict()
            models.average_weights(box.model, state, self.config.keep_start)
        return box

    def _version_params(self, reached: int, box: DetectorBox) -> dict[str, Any]:
        best = self.best
        return {"run_id": self.run_id, "base": self.settings["base"], "base_label": self.settings["base_label"],
                "iterations": reached, **self.settings["config"],
                "dataset": {"split": self.settings["train_split"], "image_ids": [s.image_id for s in self.train_set],
                            "boxes_hash": hash_dataset(self.train_set)},
                "best_val_map_50": best["map_50"] if best["map_50"] >= 0 else None,
                "best_iteration": best["iteration"] or None, "seconds": self.metrics["seconds"],
                "device": str(box.device), "before": self.metrics.get("before"), "after": self.metrics.get("after")}


def moo(metrics: dict[str, Any]) -> str:
    """The seed's one-line verdict: "Moo! mAP50 0.52 → 0.95" (or what is known)."""
    before, after = metrics.get("before"), metrics.get("after")
    if before and after:
        return f"Moo! mAP50 {before['map_50']:.2f} → {after['map_50']:.2f}"
    return "Moo! Training finished."


def cowsay_text(metrics: dict[str, Any]) -> str:
    """:func:`moo` said by a cow (the seed notebook's cowsay)."""
    import cowsay

    return cowsay.get_output_string("cow", moo(metrics))
