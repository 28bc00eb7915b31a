"""The track-many job: many stored videos tracked on a Ray cluster (:mod:`cowdetect.cluster`), one
task per video; only this job's process writes the store.

Each video gets its own tracking run (kind ``track``, with ``parent`` naming this run: the settings,
files and summary of a plain ``track``), so the Track page shows each as usual. The job makes them
when it starts, owns them (its pid) while it runs and ends them with it; a video's run that another
live process is running (resumed alone on its page) is left to it. This job's row (kind
``track-many``) carries the progress (frames done over all videos) and the Stop; a Stop on one
video's run cancels that task alone. A task gets the video's bytes, the model's checkpoint and the
video's kept detections, and returns the run's files, its summary and the detections (kept for the
next run). A task whose worker dies is run again by Ray (:data:`cowdetect.cluster.RETRIES`); a video
that still fails ends its own run ``failed`` while the others go on. Each file of a video is written
whole (atomically) once its task has returned them all.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from .. import cluster as clusters
from ..config import TrackConfig, from_dict
from ..detector import DetectorBox, resolve_device
from ..files import atomic_write_bytes, pid_alive, remove_abandoned
from ..framecache import FrameDetections
from ..images import encode_image
from ..models import resolve
from ..store import ACTIVE, RunRecord, Store, now
from .machinery import Log, Ticker, create_run, fail, recorded, start, stderr_log
from .track import TRACK_FILES, detection_cache_path, finish_tracking, track_files, track_outputs, tracking_settings

# The pseudo device a cluster job claims: one at a time per data folder, beside the local jobs
# (which claim 'cpu' or 'cuda:N'); the work itself runs on the cluster.
DEVICE = "ray"


def track_many_settings(store: Store, video_ids: list[int], model: str = "active", device: str = "auto",
                        ray: str | None = None, workers: int | None = None, threads: int = 1,
                        gpu_fraction: float | None = None, **config: Any) -> dict[str, Any]:
    """Check a request to track ``video_ids`` (stored videos, each with its own saved lines and
    zones) on the Ray cluster at ``ray`` (:func:`cowdetect.cluster.cluster_settings` for it and the
    other cluster settings; None: a local Ray). ``config``: :class:`~cowdetect.config.TrackConfig`
    fields; ``model``: a model spec, resolved — and opened, to be sent to the workers — on this
    machine's ``device`` ('pretrained' means what it means here), pinned for every video.

    Raises:
        ValueError: no video, one given twice, an unknown video / model / setting, a bad address or
            one where nothing answers (within :data:`cowdetect.cluster.CONNECT_SECONDS`).
        PermissionDenied: a cluster address only an admin may use (:func:`cowdetect.cluster.allowed_address`).
    """
    if not video_ids:
        raise ValueError("videos: expected at least one video to track")
    twice = sorted(v for v, n in collections.Counter(video_ids).items() if n > 1)
    if twice:
        raise ValueError(f"videos: each video once, got {', '.join(map(str, twice))} more than once")
    cluster = clusters.job_cluster(store, ray, workers, threads, gpu_fraction)
    dev = str(resolve_device(device))
    videos = [tracking_settings(store, int(v), model=model, device=dev, **config) for v in video_ids]
    return {"videos": videos, "model": videos[0]["model"], "model_label": videos[0]["model_label"],
            "device": DEVICE, "open_device": dev, "cluster": cluster}


def create_track_many_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a track-many run with checked ``settings`` (:func:`track_many_settings`); returns its id.
    Its videos' tracking runs are made when it starts (:func:`track_many_children`)."""
    frames = sum(int(store.video(v["video_id"]).frames or 0) for v in settings["videos"])
    return create_run(store, "track-many", settings, frames)


def track_many_children(store: Store, run_id: int) -> list[RunRecord]:
    """The tracking runs of track-many run ``run_id``, one per video, in the order its videos were given
    (none before it first started)."""
    order = {v["video_id"]: i for i, v in enumerate(store.run(run_id).params["videos"])}
    mine = [r for r in store.runs("track") if r.params.get("parent") == run_id]
    return sorted(mine, key=lambda r: order.get(r.params["video_id"], len(order)))


def run_track_many(store: Store, run_id: int, log: Log | None = None) -> RunRecord:
    """Run track-many run ``run_id``: every one of its videos not yet done, on Ray; returns the
    final row (``done`` when every video is, ``failed`` naming the videos that failed, ``stopped`` on
    a Stop). Metrics: ``videos`` done, ``failed`` ({run id: reason})."""
    log = log or stderr_log
    run = start(store, run_id, "track-many", log)
    if run.status == "stopped":
        return run
    with recorded(store, run_id), _children_follow(store, run_id):
        todo = _take_children(store, run, log)
        if not todo:  # every video is done, or another process runs it
            return _end(store, run_id, True, {}, log)
        with clusters.connect(**run.params["cluster"]) as cluster:
            log(f"run {run_id}: {len(todo)} videos to track on Ray ({cluster.address or 'this machine'}, "
                f"{cluster.slots()} at once, {cluster.device})")
            driver = _Driver(store, run, cluster, todo, log)
            completed = clusters.run_tasks(cluster, cluster.remote(track_on_worker), driver.items(),
                                           on_result=driver.on_result, on_error=driver.on_error,
                                           on_poll=driver.on_poll, to_cancel=driver.stopped_alone)
        if not completed:
            _settle(store, run_id, "stopped", "stopped with its track-many run; resume that to go on")
        return _end(store, run_id, completed, driver.failed, log)


def _take_children(store: Store, run: RunRecord, log: Log) -> list[RunRecord]:
    """This run's videos' runs that are not done, made where missing and taken by this process
    (queued, its pid); one that another live process runs is left to it."""
    have = {child.params["video_id"]: child for child in track_many_children(store, run.id)}
    me, todo = os.getpid(), []
    for video in run.params["videos"]:
        child = have.get(video["video_id"])
        if child is None:  # a second start of the same request finds these (add_run keeps one)
            child_id, _ = store.add_run("track", {**video, "parent": run.id},
                                        total=int(store.video(video["video_id"]).frames or 0))
            child = store.run(child_id)
        if child.status == "done":
            continue
        owner = store.take_run(child.id, me, pid_alive)
        if owner is not None:
            log(f"run {run.id}: run {child.id} is being run by process {owner}; left to it")
            continue
        store.update_run(child.id, status="queued", stop_requested=0, error=None, finished_at=None)
        todo.append(store.run(child.id))
    return todo


@contextlib.contextmanager
def _children_follow(store: Store, run_id: int) -> Iterator[None]:
    """On an error or Ctrl+C in the driver, the videos it runs end with it (never left 'running')."""
    try:
        yield
    except KeyboardInterrupt:
        _settle(store, run_id, "interrupted", "interrupted (Ctrl+C or SIGTERM)")
        raise
    except BaseException as exc:
        _settle(store, run_id, "failed", str(exc) or type(exc).__name__)
        raise


def _settle(store: Store, run_id: int, status: str, error: str) -> None:
    """End as ``status`` each video's run of ``run_id`` that this process still runs."""
    for child in track_many_children(store, run_id):
        if child.status in ACTIVE and child.pid == os.getpid():
            store.update_run(child.id, status=status, error=error[:2000], finished_at=now())


def _end(store: Store, run_id: int, completed: bool, failed: dict[int, str], log: Log) -> RunRecord:
    """The run's last row: stopped (by its Stop, or one of its videos by its own), failed (naming the
    videos that failed) or done; progress as its videos' runs say."""
    children = track_many_children(store, run_id)
    done = [c for c in children if c.status == "done"]
    metrics = {"videos": len(done), "failed": {str(k): v for k, v in failed.items()}}
    frames = sum(c.iteration for c in done)
    if failed:
        names = "; ".join(f"run {k}: {v}" for k, v in list(failed.items())[:3])
        store.update_run(run_id, status="failed", metrics=metrics, iteration=frames, finished_at=now(),
                         error=f"{len(failed)} of {len(children)} videos failed ({names})")
    elif not completed or len(done) < len(children):
        store.update_run(run_id, status="stopped", metrics=metrics, iteration=frames, finished_at=now(),
                         error=f"stopped with {len(done)} of {len(children)} videos done; resume to go on")
    else:
        store.update_run(run_id, status="done", metrics=metrics, iteration=frames, total=frames, finished_at=now())
    final = store.run(run_id)
    log(f"run {run_id}: {final.status}; {len(done)} of {len(children)} videos tracked"
        + (f"; {final.error}" if final.error else ""))
    return final


class _Driver:
    """The driver's side of one track-many run: what each task gets, what is written when it ends,
    and the progress of the tasks running (``running``: run id → frames done)."""

    def __init__(self, store: Store, run: RunRecord, cluster: clusters.Cluster, children: list[RunRecord],
                 log: Log) -> None:
        self.store, self.run_id, self.cluster, self.children, self.log = store, run.id, cluster, children, log
        self.ticker = Ticker(store, run.id)
        self.board = clusters.board(cluster)
        self.failed: dict[int, str] = {}
        self.running: dict[int, int] = {}
        self.finished = sum(c.iteration for c in track_many_children(store, run.id) if c.status == "done")
        self.where: dict[int, str] = {}
        device = run.params.get("open_device", "cpu")
        self.ref = resolve(store, run.params["model"], device)
        self.box = DetectorBox.open(self.ref, device, weights_dir=store.weights_dir)
        self.model = cluster.put(clusters.model_payload(self.box, self.ref.checkpoint, store.inside("tmp")))

    def _cache_path(self, child: RunRecord) -> Path:
        video = self.store.video(child.params["video_id"])
        config = from_dict(TrackConfig, child.params["config"])
        return detection_cache_path(self.store, video, self.box, self.ref, config.max_detect_side, config.tiles,
                                    device_type=self.cluster.device)

    def items(self) -> Iterator[tuple[int, tuple]]:
        """(run id, task arguments) per video, read when submitted (bounded memory for long lists); its
        run is running from then on."""
        for child in self.children:
            if self.store.run(child.id).stop_requested:  # stopped on its own page before its turn
                self._end_one(child.id, "stopped", "stopped; resume the track-many run to track it")
                continue
            video = self.store.video(child.params["video_id"])
            cache = self._cache_path(child)
            kept = cache.read_bytes() if cache.is_file() else b""
            self.store.update_run(child.id, status="running", device=DEVICE, iteration=0)
            self.running[child.id] = 0
            yield child.id, (self.cluster.put(video.path.read_bytes()), video.original_name, self.model,
                             self.cluster.device, child.params["config"], child.params.get("geometry", {}), kept,
                             self.board, child.id)

    def on_result(self, child_id: int, out: dict[str, Any]) -> None:
        """Write one video's files (each whole, atomically), keep its detections, end its run."""
        from ..tracking import TrackResult

        self.running.pop(child_id, None)
        child = self.store.run(child_id)
        outputs = track_outputs(self.store, child_id)
        outputs["video"].parent.mkdir(parents=True, exist_ok=True)
        for key, data in out["files"].items():
            atomic_write_bytes(outputs[key], data)
        cache = self._cache_path(child)
        if len(out["detections"]) > (cache.stat().st_size if cache.is_file() else 0):
            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, out["detections"])
        result = TrackResult(**out["result"])
        finish_tracking(self.store, child_id, self.store.video(child.params["video_id"]), result, out["counts"],
                        self.log)
        self.finished += result.frames

    def on_error(self, child_id: int, reason: str) -> None:
        self.failed[child_id] = reason
        self._end_one(child_id, "failed", reason)

    def stopped_alone(self) -> list[int]:
        """The videos whose own run was asked to stop (its Stop on the Track page), ended ``stopped``."""
        asked = [c for c in self.running if self.store.run(c).stop_requested]
        for child_id in asked:
            self._end_one(child_id, "stopped", "stopped; resume the track-many run to track it")
        return asked

    def _end_one(self, child_id: int, status: str, reason: str) -> None:
        self.running.pop(child_id, None)
        if status == "failed":
            fail(self.store, child_id, reason)
        else:
            self.store.update_run(child_id, status=status, error=reason, finished_at=now())
        self.log(f"run {self.run_id}: run {child_id} {status}" + (f": {reason}" if status == "failed" else ""))

    def on_poll(self) -> bool:
        """Copy the running tasks' progress into their runs and this run; False when a Stop was asked."""
        for child_id, state in self.cluster.get(self.board.take.remote()).items():
            if child_id not in self.running:  # a report that came after its task ended
                continue
            self._note_worker(child_id, f"{state['host']} pid {state['pid']}")
            self.running[child_id] = state["done"]
            self.store.update_run(child_id, iteration=state["done"], total=state["total"])
            atomic_write_bytes(track_outputs(self.store, child_id)["preview"], state["preview"])
        done = self.finished + sum(self.running.values())
        total = max(self.store.run(self.run_id).total, done)
        # never "the end" here (Ticker writes then at once): the last video's files are not written yet
        return self.ticker.poll(done, total, final=False)

    def _note_worker(self, child_id: int, where: str) -> None:
        """Log where each video runs, and when Ray runs it again elsewhere (its worker died)."""
        if child_id not in self.where:
            self.log(f"run {self.run_id}: run {child_id} runs on the Ray worker {where}")
        elif self.where[child_id] != where:
            self.log(f"run {self.run_id}: the Ray worker of run {child_id} ({self.where[child_id]}) ended; Ray "
                     f"runs it again ({where})")
        self.where[child_id] = where


class _Reporter:
    """A worker's tracking progress callback: frames done and a preview to the board, about once a second."""

    def __init__(self, board: Any, key: int) -> None:
        self.board, self.key, self.last = board, key, 0.0

    def __call__(self, done: int, total: int, frame: Any) -> bool:
        if time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            self.board.report.remote(self.key, {"done": done, "total": total, "pid": os.getpid(),
                                                "host": socket.gethostname(),
                                                "preview": encode_image(frame, "JPEG", 85)})
        return True


def track_on_worker(video: bytes, name: str, model: tuple[bytes, str], device: str, config: dict[str, Any],
                    geometry: dict[str, Any], kept: bytes, board: Any, key: int) -> dict[str, Any]:
    """A Ray task: track one video (its file's bytes; ``name`` its stored name, which messages use)
    as a plain ``track`` does (:func:`~cowdetect.jobs.track.track_files`), in a scratch folder of the
    worker; returns the run's files (bytes by :data:`TRACK_FILES` key), the summary, the counts and
    the detections file (``kept``'s frames and the new ones). Touches no data folder."""
    box = clusters.open_model(*model, device)
    remove_abandoned(Path(tempfile.gettempdir()), "cowdetect-")  # what workers killed mid-video left
    with tempfile.TemporaryDirectory(prefix=f"cowdetect-{os.getpid()}-") as scratch:
        folder = Path(scratch)
        source = folder / (Path(name).stem[:100] + Path(name).suffix)  # a file system's name limit is 255 bytes
        source.write_bytes(video)
        (folder / "detections.f32").write_bytes(kept)
        paths = {key_: folder / file for key_, file in TRACK_FILES.items()}
        with FrameDetections(folder / "detections.f32", box.class_names) as cache:
            result, counts = track_files(source, box, paths, from_dict(TrackConfig, config), geometry, cache,
                                         _Reporter(board, key))
        return {"files": {k: path.read_bytes() for k, path in paths.items() if path.is_file()},
                "result": dataclasses.asdict(result), "counts": counts,
                "detections": (folder / "detections.f32").read_bytes()}
