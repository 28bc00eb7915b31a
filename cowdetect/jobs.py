"""Background jobs: a training or tracking run is a row in the store, run by one function in its own process.

``create_training_run`` / ``create_tracking_run`` write the row (status ``queued``);
``start_worker`` spawns ``python -m cowdetect worker RUN_ID``, which calls :func:`run_job` →
:func:`run_training` or :func:`run_tracking` — the very functions the CLI's ``train`` and
``track`` run in the foreground. The job writes progress points, checkpoints and
its status to the store; pages only read those rows and write commands (stop, resume).
A closed browser, a second viewer, a server restart or ``kill -9`` are ordinary cases: a run
whose process is gone is marked ``interrupted`` and resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .config import TrainConfig, from_dict, to_dict
from .detector import DetectorBox, read_checkpoint_meta, resolve_device
from .engine import validation_loss
from .framecache import FrameDetections
from .models import get_architecture, train_defaults
from .store import Store

# Fewer labeled training images than this cannot teach a detector anything useful.
MIN_TRAIN_IMAGES = 5
ACTIVE = ("queued", "running")
Log = Callable[[str], None]


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def pid_alive(pid: int | None) -> bool:
    """True when a process with this pid runs (a zombie — dead, not yet reaped — counts as gone)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def mark_interrupted(store: Store) -> list[int]:
    """Mark queued/running runs whose process is gone as ``interrupted``; returns their ids."""
    gone = [r["id"] for r in store.runs() if r["status"] in ACTIVE and r["pid"] and not pid_alive(r["pid"])]
    for run_id in gone:
        store.update_run(run_id, status="interrupted", error="the worker process ended unexpectedly",
                         finished_at=_now())
    return gone


def runs_table(store: Store) -> list[dict[str, Any]]:
    """Runs for display (statuses refreshed first): id, kind, status, iteration, checkpoint_iteration, ..."""
    mark_interrupted(store)
    return [{"id": r["id"], "kind": r["kind"], "status": r["status"], "iteration": r["iteration"],
             "total": r["total"], "checkpoint_iteration": r["checkpoint_iteration"], "model_id": r["model_id"],
             "created_at": r["created_at"], "finished_at": r["finished_at"], "error": r["error"]}
            for r in store.runs()]


# -- creating and controlling runs ---------------------------------------------------------

def training_settings(store: Store, base: str = "pretrained", iterations: int = 1000,
                      batch_size: int | None = None, learning_rate: float | None = None,
                      checkpoint_every: int = 100, eval_every: int = 100, patience: int = 0,
                      horizontal_flip: bool = True, color_jitter: bool | None = None,
                      scale_jitter: bool | None = None, freeze_backbone: bool = False,
                      train_split: str = "train", val_split: str = "val", test_split: str = "test",
                      device: str = "auto", name: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Check and complete the settings of a training run (architecture defaults filled in).

    ``base``: 'pretrained' (the COCO detector that suits the device), 'coco:ARCH',
    'untrained:ARCH', or a stored model version's name or id.

    Raises:
        ValueError: an unknown base or split, or too few labeled training images (the message
            says how many more are needed).
    """
    dev = resolve_device(device)
    if base == "pretrained":
        from .config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE
        architecture = GPU_ARCHITECTURE if dev.type == "cuda" else DEFAULT_ARCHITECTURE
    elif base.startswith(("untrained:", "coco:")):
        architecture = base.split(":", 1)[1]
        get_architecture(architecture)
    else:
        architecture = store.model(base).architecture
    dataset = store.dataset(train_split)
    if len(dataset) < MIN_TRAIN_IMAGES:
        raise ValueError(f"split {train_split!r} has {len(dataset)} labeled images; label at least "
                         f"{MIN_TRAIN_IMAGES - len(dataset)} more (the minimum is {MIN_TRAIN_IMAGES})")
    dataset.require_nonempty("train")
    defaults = train_defaults(architecture)
    config = TrainConfig(**{**defaults, "iterations": iterations, "checkpoint_every": checkpoint_every,
                            "horizontal_flip": horizontal_flip, "freeze_backbone": freeze_backbone, "seed": seed,
                            **({"batch_size": batch_size} if batch_size else {}),
                            **({"learning_rate": learning_rate} if learning_rate else {}),
                            **({"color_jitter": color_jitter} if color_jitter is not None else {}),
                            **({"scale_jitter": scale_jitter} if scale_jitter is not None else {})})
    if eval_every < 0 or patience < 0:
        raise ValueError(f"eval_every and patience: expected 0 or more, got {eval_every} and {patience}")
    return {"base": base, "architecture": architecture, "device": str(dev), "train_split": train_split,
            "val_split": val_split, "test_split": test_split, "eval_every": eval_every, "patience": patience,
            "name": name, "config": to_dict(config)}


def _create_run(store: Store, kind: str, settings: dict[str, Any], total: int) -> int:
    """Queue a run; an identical request while the first is still queued or running returns the
    first run's id instead of a duplicate (two clicks on Start make one job)."""
    mark_interrupted(store)
    for run in store.runs(kind):
        if run["status"] in ACTIVE and run["params"] == settings:
            return run["id"]
    return store.add_run(kind, settings, total=total)


def create_training_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a training run with checked ``settings`` (see :func:`training_settings`); returns its id."""
    return _create_run(store, "train", settings, settings["config"]["iterations"])


def start_worker(store: Store, run_id: int) -> int:
    """Run a queued run in a new background process; returns its pid. Output goes to run-N/worker.log."""
    folder = store.inside(Path("runs") / f"run-{run_id}")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "worker.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cowdetect", "worker", str(run_id), "--data-dir",
                                 str(store.data_dir)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    store.update_run(run_id, pid=proc.pid)
    return proc.pid


def request_stop(store: Store, run_id: int) -> None:
    """Ask a run to stop: it saves a checkpoint and ends as ``stopped``. A queued run is stopped at once."""
    run = store.run(run_id)
    if run["status"] == "queued" and not pid_alive(run["pid"]):
        store.update_run(run_id, status="stopped", finished_at=_now())
    elif run["status"] in ACTIVE:
        store.update_run(run_id, stop_requested=1)


def prepare_resume(store: Store, run_id: int) -> None:
    """Queue a stopped, failed or interrupted run again; it continues from its last checkpoint."""
    mark_interrupted(store)
    run = store.run(run_id)
    if run["status"] in ACTIVE:
        raise ValueError(f"run {run_id} is already {run['status']}")
    if run["status"] == "done":
        raise ValueError(f"run {run_id} is done; start a new run to train further")
    store.update_run(run_id, status="queued", stop_requested=0, error=None, finished_at=None, pid=None)


def estimate_seconds(store: Store, settings: dict[str, Any], steps: int = 2) -> dict[str, float]:
    """Measure training steps with these settings (after one warm-up step) and extrapolate.

    Returns seconds_per_iteration and total_seconds (iterations only; evaluations add more).
    """
    config = from_dict(TrainConfig, {**settings["config"], "iterations": steps + 1, "checkpoint_every": 0,
                                     "warmup_iterations": 0})
    box = _open_base(store, settings)
    history = box.train(store.dataset(settings["train_split"]), config=config)
    per = (history[-1]["seconds"] - history[0]["seconds"]) / max(1, len(history) - 1)
    return {"seconds_per_iteration": per, "total_seconds": per * settings["config"]["iterations"]}


def progress(store: Store, run_id: int) -> dict[str, Any]:
    """What a progress display needs: iteration, total, iterations/s, seconds left, points."""
    run = store.run(run_id)
    points = store.points(run_id)
    rate = 0.0
    recent = [p for p in points if p["iteration"] > run["checkpoint_iteration"] or not run["checkpoint_iteration"]]
    if len(recent) >= 2 and recent[-1]["seconds"] > recent[0]["seconds"]:
        rate = (recent[-1]["iteration"] - recent[0]["iteration"]) / (recent[-1]["seconds"] - recent[0]["seconds"])
    left = (run["total"] - run["iteration"]) / rate if rate > 0 else None
    return {"run": run, "points": points, "val_points": store.points(run_id, "val"), "rate": rate,
            "seconds_left": left}


# -- the job itself ------------------------------------------------------------------------

def _wait_for_turn(store: Store, run_id: int, device: str, log: Log) -> bool:
    """One run (training or tracking) at a time per device: wait while another holds it. False if stopped while waiting."""
    told = False
    while True:
        mark_interrupted(store)
        me = store.run(run_id)
        if me["stop_requested"]:
            return False
        busy = [r for r in store.runs() if r["id"] != run_id and r["status"] == "running"
                and r["device"] == device and pid_alive(r["pid"])]
        if not busy:
            return True
        if not told:
            log(f"run {run_id} waits for run {busy[0]['id']} on {device}")
            told = True
        time.sleep(1.0)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _start(store: Store, run_id: int, kind: str, log: Log, restart: bool) -> dict[str, Any]:
    """Check that run ``run_id`` is a queued/running ``kind`` run, record this process as its
    worker, wait for the device and mark the run ``running`` (``restart``: from the beginning,
    progress and error cleared — tracking and evaluation do not resume). Returns the run's row:
    ``stopped`` if a stop came first."""
    run = store.run(run_id)
    if run["kind"] != kind:
        raise ValueError(f"run {run_id} is a {run['kind']} run, not a {kind} run")
    if run["status"] not in ACTIVE:
        raise ValueError(f"run {run_id} is {run['status']}; resume it first")
    store.update_run(run_id, pid=os.getpid(), device=run["params"]["device"])
    if not _wait_for_turn(store, run_id, run["params"]["device"], log):
        store.update_run(run_id, status="stopped", finished_at=_now())
    elif restart:
        store.update_run(run_id, status="running", started_at=_now(), iteration=0, error=None)
    else:
        store.update_run(run_id, status="running", started_at=run["started_at"] or _now())
    return store.run(run_id)


def _parent_id(store: Store, base: str) -> int | None:
    """The stored version a run starts from, or None for pretrained / untrained bases."""
    if base == "pretrained" or base.startswith(("coco:", "untrained:")):
        return None
    return store.model(base).id


def _open_base(store: Store, settings: dict[str, Any]) -> DetectorBox:
    base, device = settings["base"], settings["device"]
    if base == "pretrained":
        return DetectorBox.pretrained(device, weights_dir=store.weights_dir)
    if base.startswith("coco:"):
        return DetectorBox(base.split(":", 1)[1], weights="coco", device=device, weights_dir=store.weights_dir)
    if base.startswith("untrained:"):
        torch.manual_seed(settings["config"]["seed"])
        return DetectorBox(base.split(":", 1)[1], weights=None, classes=store.classes(), device=device)
    return DetectorBox.load(store.model(base).checkpoint, device=device)


def run_training(store: Store, run_id: int, log: Log | None = None, log_every: float = 5.0) -> dict[str, Any]:
    """Run (or resume) training run ``run_id`` to its end; the job function of workers and the CLI.

    Writes progress points every ~second, a checkpoint every ``checkpoint_every`` iterations
    and on stop, validation loss and mAP every ``eval_every`` iterations (keeping the best
    checkpoint), and at the end a model version with the before → after test mAP.

    Returns the run's final row. Errors end the run as ``failed`` with the reason, and are raised.
    """
    log = log or _stderr
    run = _start(store, run_id, "train", log, restart=False)
    if run["status"] == "stopped":
        return run
    settings = run["params"]
    folder = store.inside(Path("runs") / f"run-{run_id}")
    with _recorded(store, run_id):
        try:
            return _train(store, run_id, settings, folder, log, log_every)
        except torch.cuda.OutOfMemoryError as exc:
            raise RuntimeError(f"the GPU ran out of memory ({str(exc).splitlines()[0]}); try a smaller batch size "
                               f"or image size. Checkpoints so far are kept.") from exc


def _fail(store: Store, run_id: int, message: str) -> None:
    store.update_run(run_id, status="failed", error=message[:2000], finished_at=_now())


def _train(store: Store, run_id: int, settings: dict[str, Any], folder: Path, log: Log,
           log_every: float) -> dict[str, Any]:
    run = store.run(run_id)
    config = from_dict(TrainConfig, settings["config"])
    train_set = store.dataset(settings["train_split"])
    val_set = store.dataset(settings["val_split"]) if settings["val_split"] else None
    test_set = store.dataset(settings["test_split"]) if settings["test_split"] else None
    if val_set is not None and val_set.num_boxes == 0:
        val_set = None
    if test_set is not None and test_set.num_boxes == 0:
        test_set = None
    metrics = dict(run["metrics"])
    start, optimizer_state = 0, None
    parent_id = _parent_id(store, settings["base"])
    if run["checkpoint"] and run["checkpoint_iteration"]:
        # Resuming: the checkpoint holds the model, so the base is not built at all.
        checkpoint = store.inside(run["checkpoint"])
        box = DetectorBox.load(checkpoint, device=settings["device"])
        optimizer_state = read_checkpoint_meta(checkpoint)["optimizer"]
        start = run["checkpoint_iteration"]
        store.drop_points_after(run_id, start)
        log(f"run {run_id}: resuming from iteration {start}")
    else:
        box = _open_base(store, settings)
        store.drop_points_after(run_id, 0)
        if test_set is not None and "before" not in metrics:
            log(f"run {run_id}: measuring mAP on {settings['test_split']} before training")
            before = box.evaluate(test_set)
            metrics["before"] = {k: getattr(before, k) for k in ("map", "map_50", "map_75")}
            store.update_run(run_id, metrics=metrics)
        log(f"run {run_id}: {box.origin}")
    log(f"run {run_id}: training {box.architecture} on {len(train_set)} images, iterations {start}→"
        f"{config.iterations}, batch {config.batch_size}, lr {config.learning_rate}, device {box.device}")

    pending: list[dict[str, float]] = []
    state = {"last_flush": time.monotonic(), "last_log": 0.0, "stop": False, "bad_evals": 0}
    t0 = time.monotonic()
    best = dict(metrics.get("best", {"map_50": -1.0, "iteration": 0}))
    best_path = folder / "best.pt"

    def flush(iteration: int) -> None:
        now = time.monotonic()
        if pending and (now - state["last_log"] >= log_every or iteration == config.iterations):
            rate = (iteration - start) / max(1e-9, now - t0)
            log(f"iter {iteration}/{config.iterations}  loss {pending[-1]['loss']:.4f}  lr {pending[-1]['lr']:.5f}  "
                f"{rate:.2f} it/s  eta {(config.iterations - iteration) / max(rate, 1e-9):.0f}s")
            state["last_log"] = now
        store.add_points(run_id, pending)
        pending.clear()
        store.update_run(run_id, iteration=iteration)
        state["last_flush"] = time.monotonic()
        if store.run(run_id)["stop_requested"]:
            state["stop"] = True

    def evaluate(iteration: int) -> None:
        val_loss = validation_loss(box.model, val_set, box.device)
        result = box.evaluate(val_set)
        point = {"iteration": iteration, "val_loss": val_loss["loss"], "val_map": result.map,
                 "val_map_50": result.map_50}
        store.add_points(run_id, [point], kind="val")
        log(f"run {run_id}: iteration {iteration} val loss {val_loss['loss']:.4f} val mAP50 {result.map_50:.4f}")
        if result.map_50 > best["map_50"]:
            best.update(map_50=result.map_50, map=result.map, iteration=iteration)
            box.save(best_path, meta={"iteration": iteration, "val_map_50": result.map_50})
            state["bad_evals"] = 0
        else:
            state["bad_evals"] += 1
        metrics["best"] = best
        store.update_run(run_id, metrics=metrics)
        if settings["patience"] and state["bad_evals"] >= settings["patience"]:
            log(f"run {run_id}: early stop, no better val mAP in {settings['patience']} evaluations")
            metrics["early_stopped_at"] = iteration
            state["stop"] = True

    def on_iteration(record: dict[str, float]) -> bool:
        it = int(record["iteration"])
        pending.append({k: round(v, 6) for k, v in record.items()})
        if time.monotonic() - state["last_flush"] >= 1.0 or it == config.iterations:
            flush(it)
        if val_set is not None and settings["eval_every"] and it % settings["eval_every"] == 0:
            evaluate(it)
        return not state["stop"]

    def on_checkpoint(iteration: int, path: Path) -> None:
        store.update_run(run_id, checkpoint=path.relative_to(store.data_dir).as_posix(),
                         checkpoint_iteration=iteration)

    started = time.monotonic()
    history = box.train(train_set, config=config, callback=on_iteration, checkpoint_dir=folder,
                        start_iteration=start, optimizer_state=optimizer_state, on_checkpoint=on_checkpoint)
    reached = int(history[-1]["iteration"]) if history else start
    if pending:
        flush(reached)
    seconds = time.monotonic() - started + float(metrics.get("seconds", 0.0))
    metrics["seconds"] = round(seconds, 1)
    if state["stop"] and reached < config.iterations and "early_stopped_at" not in metrics:
        store.update_run(run_id, status="stopped", iteration=reached, metrics=metrics, finished_at=_now())
        log(f"run {run_id}: stopped at iteration {reached}; checkpoint at {store.run(run_id)['checkpoint_iteration']}")
        return store.run(run_id)

    if val_set is not None and settings["eval_every"] and reached % settings["eval_every"] and not state["stop"]:
        evaluate(reached)  # the final weights compete for "best" too
    if best_path.is_file() and best["map_50"] >= 0:
        box = DetectorBox.load(best_path, device=settings["device"])
    name = store.unique_model_name(settings.get("name") or f"{box.architecture.split('_')[0]}-run{run_id}")
    target = store.model_checkpoint_path(name)
    box.save(target, meta={"run_id": run_id, "iterations": reached})
    if test_set is not None:
        after = box.evaluate(test_set)
        metrics["after"] = {k: getattr(after, k) for k in ("map", "map_50", "map_75")}
        store.add_result(name, settings["test_split"], store.dataset_hash(settings["test_split"]), after.as_dict())
    train_ids = [s.image_id for s in train_set]
    record = store.add_model(name, box.architecture, box.classes, target, parent_id, {
        "run_id": run_id, "base": settings["base"], "iterations": reached, **settings["config"],
        "dataset": {"split": settings["train_split"], "image_ids": train_ids,
                    "boxes_hash": store.dataset_hash(settings["train_split"])},
        "best_val_map_50": best["map_50"] if best["map_50"] >= 0 else None,
        "best_iteration": best["iteration"] or None, "seconds": round(seconds, 1), "device": str(box.device),
        "before": metrics.get("before"), "after": metrics.get("after")})
    store.update_run(run_id, status="done", iteration=reached, model_id=record.id, metrics=metrics,
                     finished_at=_now())
    log(f"run {run_id}: saved model version {name}; {moo(metrics)}")
    return store.run(run_id)


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


def install_sigterm_handler() -> None:
    """Turn SIGTERM into KeyboardInterrupt so a terminated worker marks its run interrupted."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)



@contextlib.contextmanager
def _recorded(store: Store, run_id: int) -> Iterator[None]:
    """End the run as ``interrupted`` on Ctrl+C / SIGTERM and ``failed`` (with the reason) on any
    other error, then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        store.update_run(run_id, status="interrupted", error="interrupted (Ctrl+C or SIGTERM)", finished_at=_now())
        raise
    except BaseException as exc:
        _fail(store, run_id, str(exc))
        raise


def _open_model(store: Store, model: str, device: str) -> DetectorBox:
    """'pretrained' or a stored version's id, as a DetectorBox on ``device``."""
    if model == "pretrained":
        return DetectorBox.pretrained(device, weights_dir=store.weights_dir)
    return DetectorBox.load(store.model(int(model)).checkpoint, device=device)


# -- tracking ------------------------------------------------------------------------------

# What a tracking run leaves in runs/run-N/.
TRACK_FILES = {"video": "tracked.mp4", "mot": "tracks.mot.txt", "csv": "tracks.csv", "preview": "preview.jpg"}


def add_video(store: Store, data: bytes, name: str, ground_truth: str | None = None) -> int:
    """Check and store an uploaded video (and optional MOTChallenge ground truth); returns its id.

    The bytes are probed from a scratch file inside the data folder before anything is
    stored, so a file that is not a video, or has no decodable frame, changes nothing.

    Raises:
        ValueError: an unknown file type, not a video, no frames, or ground truth that is not
            MOTChallenge text.
    """
    from .mot import read_mot
    from .video import VIDEO_SUFFIXES, probe_video

    suffix = Path(name).suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{name}: expected a video file ({', '.join(VIDEO_SUFFIXES)}), got {suffix or 'no extension'}")
    if not data:
        raise ValueError(f"{name}: the file is empty")
    scratch = store.inside("tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    probe_path = scratch / f"probe-{os.getpid()}-{time.monotonic_ns()}{suffix}"
    try:
        probe_path.write_bytes(data)
        try:
            info = probe_video(probe_path)
        except ValueError as exc:
            raise ValueError(str(exc).replace(probe_path.name, Path(name).name)) from None
        if ground_truth is not None:
            gt_path = probe_path.with_suffix(".gt.txt")
            gt_path.write_text(ground_truth)
            try:
                read_mot(gt_path)
            finally:
                gt_path.unlink(missing_ok=True)
    finally:
        probe_path.unlink(missing_ok=True)
    return store.add_video(data, Path(name).name, info.width, info.height, info.fps, info.frames, ground_truth)


def tracking_settings(store: Store, video_id: int, model: str = "active", device: str = "auto",
                      **config: Any) -> dict[str, Any]:
    """Check and complete the settings of a tracking run.

    ``model``: 'active' (the active model version, else the pretrained detector), 'pretrained',
    or a stored model version's name or id. ``config``: :class:`~cowdetect.config.TrackConfig` fields.

    Raises:
        ValueError: an unknown video, model or setting.
    """
    from .config import TrackConfig
    from .tracking import get_distance

    videos = {v["id"]: v for v in store.videos()}
    if video_id not in videos:
        raise ValueError(f"video {video_id}: no such stored video (stored: {sorted(videos) or 'none'})")
    track_config = from_dict(TrackConfig, config)
    get_distance(track_config.distance)
    if model == "active":
        active = store.active_model()
        model = str(active.id) if active is not None else "pretrained"
    if model != "pretrained":
        record = store.model(model)
        model, label = str(record.id), record.name
    else:
        label = "pretrained COCO"
    return {"video_id": video_id, "model": model, "model_label": label, "device": str(resolve_device(device)),
            "config": to_dict(track_config)}


def create_tracking_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a tracking run with checked ``settings`` (see :func:`tracking_settings`); returns its id."""
    video = next(v for v in store.videos() if v["id"] == settings["video_id"])
    return _create_run(store, "track", settings, int(video["frames"] or 0))


def track_outputs(store: Store, run_id: int) -> dict[str, Path]:
    """Absolute paths of a tracking run's files (video, mot, csv, preview); they may not exist yet."""
    folder = store.inside(Path("runs") / f"run-{run_id}")
    return {key: folder / name for key, name in TRACK_FILES.items()}


def detection_cache(store: Store, video: dict[str, Any], box: DetectorBox, model: str,
                    max_detect_side: int) -> FrameDetections:
    """The kept detections (:class:`~cowdetect.framecache.FrameDetections`) of ``video`` under
    ``box`` (model 'pretrained' or a version id) at this detection size, in cache/detections/.

    Named by everything the detections depend on (video content, the weights file, detector
    settings, device type, detection size) and nothing they do not (score threshold, tracker
    settings, every-k-th), so a changed model or video never reads stale boxes.
    """
    import hashlib
    import json

    if model == "pretrained":
        weights = f"pretrained:{box.architecture}"
    else:
        checkpoint = store.model(int(model)).checkpoint
        stat = checkpoint.stat()
        weights = f"{checkpoint.name}:{stat.st_size}:{stat.st_mtime_ns}"
    key = {"video": video["sha256"], "weights": weights, "detector": to_dict(box.config),
           "device": box.device.type, "max_detect_side": max_detect_side}
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return FrameDetections(store.inside(Path("cache") / "detections" / f"{name}.f32"), box.class_names)


def run_tracking(store: Store, run_id: int, log: Log | None = None) -> dict[str, Any]:
    """Run tracking run ``run_id`` to its end; the job function of workers and the CLI's ``track``.

    Writes progress (frames done) and a preview frame about once a second, honours stop
    requests (the files keep what was done), and at the end stores the summary — and MOTA /
    IDF1 when the video has ground truth — in the run's metrics. Returns the final row.
    """
    from .config import TrackConfig
    from .images import encode_image
    from .files import atomic_write_bytes
    from .tracking import track_video

    log = log or _stderr
    run = _start(store, run_id, "track", log, restart=True)
    if run["status"] == "stopped":
        return run
    settings = run["params"]
    with _recorded(store, run_id):
        video = next((v for v in store.videos() if v["id"] == settings["video_id"]), None)
        if video is None:
            raise ValueError(f"video {settings['video_id']} is no longer stored")
        box = _open_model(store, settings["model"], settings["device"])
        outputs = track_outputs(store, run_id)
        outputs["video"].parent.mkdir(parents=True, exist_ok=True)
        log(f"run {run_id}: tracking {video['original_name']} ({video['frames']} frames) with "
            f"{settings['model_label']} ({box.architecture})")
        state = {"last": 0.0}

        def on_progress(done: int, total: int, frame: Any) -> bool:
            now = time.monotonic()
            if now - state["last"] < 1.0 and done != total:
                return True
            state["last"] = now
            atomic_write_bytes(outputs["preview"], encode_image(frame, "JPEG", 85))
            store.update_run(run_id, iteration=done, total=max(total, done))
            return not store.run(run_id)["stop_requested"]

        config = from_dict(TrackConfig, settings["config"])
        with detection_cache(store, video, box, settings["model"], config.max_detect_side) as cache:
            if len(cache):
                log(f"run {run_id}: {len(cache)} frames already detected (kept from an earlier run) are "
                    f"not detected again")
            result = track_video(video["path"], box, outputs["video"], outputs["mot"], outputs["csv"], config,
                                 progress=on_progress, cache=cache)
        metrics = {"summary": result.as_dict()}
        if video["gt_path"] is not None and result.frames:
            from .mot import mot_scores, read_mot
            metrics["mot"] = mot_scores(read_mot(video["gt_path"]), read_mot(outputs["mot"]),
                                        num_frames=result.frames)
        status = "stopped" if result.stopped else "done"
        store.update_run(run_id, status=status, iteration=result.frames, total=max(result.frames,
                         result.frames_expected), metrics=metrics, error=result.warning, finished_at=_now())
        log(f"run {run_id}: {status}; {result.frames} frames at {result.fps:.1f} fps, {result.num_tracks} tracks"
            + (f"; MOTA {metrics['mot']['mota']:.3f} IDF1 {metrics['mot']['idf1']:.3f}" if "mot" in metrics else "")
            + (f"; {result.warning}" if result.warning else ""))
        return store.run(run_id)


def run_job(store: Store, run_id: int, log: Log | None = None) -> dict[str, Any]:
    """Run any queued run by its kind (what ``python -m cowdetect worker RUN_ID`` does)."""
    kind = store.run(run_id)["kind"]
    runners: dict[str, Callable[..., dict[str, Any]]] = {"train": run_training, "track": run_tracking,
                                                         "evaluate": run_evaluation}
    if kind not in runners:
        raise ValueError(f"run {run_id}: unknown kind {kind!r}; expected one of {sorted(runners)}")
    return runners[kind](store, run_id, log=log)


# -- evaluation ----------------------------------------------------------------------------

def evaluation_settings(store: Store, model: str, split: str = "test", device: str = "auto") -> dict[str, Any]:
    """Check and complete an evaluation of ``model`` ('pretrained' or a stored version's name or
    id) on ``split``: its label, the split's content hash (the cache key) and the device.

    Raises:
        ValueError: an unknown model or split, a split without labeled images or without
            ground-truth boxes, or a model whose classes share no name with the dataset's.
    """
    from .config import DEFAULT_ARCHITECTURE, GPU_ARCHITECTURE
    from .detections import BACKGROUND
    from .models import coco_class_names

    dev = resolve_device(device)
    if model == "pretrained":
        architecture = GPU_ARCHITECTURE if dev.type == "cuda" else DEFAULT_ARCHITECTURE
        label, model_id, classes = f"pretrained COCO {architecture}", None, coco_class_names(architecture)
    else:
        record = store.model(model)
        label, model_id, classes = record.name, record.id, record.classes
    dataset = store.dataset(split)
    if not len(dataset):
        raise ValueError(f"split {split!r} has no labeled images to evaluate on; label some or choose another split")
    if dataset.num_boxes == 0:
        raise ValueError(f"split {split!r} has {len(dataset)} labeled images but no ground-truth boxes: mAP is "
                         f"undefined without cows to find")
    shared = (set(classes) - {BACKGROUND}) & set(store.classes())
    if not shared:
        raise ValueError(f"model {label}: its classes {list(classes)[:8]} share no name with the dataset's "
                         f"{list(store.classes())}; nothing to score")
    return {"model": "pretrained" if model_id is None else str(model_id), "model_label": label, "model_id": model_id,
            "split": split, "dataset_hash": store.dataset_hash(split), "device": str(dev)}


def cached_evaluation(store: Store, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The stored result for exactly these settings (same model, same split content), or None."""
    return store.cached_result(settings["model_label"], settings["split"], settings["dataset_hash"],
                               settings["model_id"])


def create_evaluation_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue an evaluation with checked ``settings`` (see :func:`evaluation_settings`); returns its id."""
    return _create_run(store, "evaluate", settings, len(store.dataset(settings["split"])))


def run_evaluation(store: Store, run_id: int, log: Log | None = None) -> dict[str, Any]:
    """Run evaluation run ``run_id``: predict the split's images (progress per batch, stop
    honoured), score them, and store the result (its id in the run's metrics)."""
    log = log or _stderr
    run = _start(store, run_id, "evaluate", log, restart=True)
    if run["status"] == "stopped":
        return run
    settings = run["params"]
    with _recorded(store, run_id):
        dataset = store.dataset(settings["split"])
        box = _open_model(store, settings["model"], settings["device"])
        log(f"run {run_id}: evaluating {settings['model_label']} on {len(dataset)} {settings['split']} images")
        state = {"last": 0.0}

        def on_progress(done: int, total: int) -> bool:
            if time.monotonic() - state["last"] >= 1.0 or done == total:
                state["last"] = time.monotonic()
                store.update_run(run_id, iteration=done, total=total)
                return not store.run(run_id)["stop_requested"]
            return True

        try:
            predictions = box.predict_dataset(dataset, progress=on_progress)
        except InterruptedError as exc:
            store.update_run(run_id, status="stopped", error=str(exc), finished_at=_now())
            return store.run(run_id)
        result = box.evaluate(dataset, predictions=predictions)
        dataset_hash = store.dataset_hash(settings["split"])  # the data may have changed meanwhile
        result_id = store.add_result(settings["model_label"], settings["split"], dataset_hash, result.as_dict(),
                                     settings["model_id"])
        store.update_run(run_id, status="done", iteration=len(dataset), metrics={"result_id": result_id,
                         "map": result.map, "map_50": result.map_50}, finished_at=_now())
        log(f"run {run_id}: mAP {result.map:.4f}, mAP50 {result.map_50:.4f}")
        return store.run(run_id)
