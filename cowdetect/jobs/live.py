"""The live job: track the cows of a camera stream until stopped, writing the annotated video in segments.

:func:`live_settings` checks a request and :func:`create_live_run` queues it; :func:`run_live` runs
it (a worker process, or ``python -m cowdetect track rtsp://...`` in the foreground). A live run
holds its device like every job (one job per device): a training queued on the same device waits
until the live run stops.

What a live run leaves in runs/run-N/: ``segment-00001.mp4``, ... (complete H.264 MP4s; the open
one is ``.partial.mp4`` until complete), ``preview.jpg`` (the latest annotated frame, about once a
second), ``tracks-K.mot.txt`` / ``tracks-K.csv`` (K: the K-th start of this run; a resumed run's
track ids and frame numbers start again), ``counts-K.csv`` with counting lines or zones. Its metrics
hold ``live`` (rolling numbers of :class:`cowdetect.live.StreamStats`), ``segments``, ``counts``
(with counting: compact while running, the whole :meth:`cowdetect.counting.Counter.summary` at the
end) and, at the end, ``summary``.

Who may read what: a URL's host must be in ``COWDETECT_STREAM_HOSTS`` (:mod:`cowdetect.stream_hosts`)
and camera devices and named pipes on the server need the admin role — unless the user is an admin
(the command line's local user is). The URL as given, credentials included, is kept only in
``source.url`` (0600) in the run folder, read by the worker; the run's settings hold it masked.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..accounts import PermissionDenied, source_key, write_private
from ..config import TrackConfig, from_dict, to_dict
from ..detector import DetectorBox, resolve_device
from ..files import atomic_write_bytes
from ..images import encode_image
from ..models import resolve
from ..store import RunRecord, Store, now
from .machinery import Log, Ticker, create_run, recorded, start, stderr_log
from .track import check_track_config

# Live defaults that differ from stored-video tracking: one frame per detector batch, since a batch
# of 4 × every 3rd frame would hold 12 frames (half a second at 25 fps) before any is written.
LIVE_CONFIG = {"batch_size": 1}
MAX_SEGMENT_SECONDS = 3600.0
SOURCE_FILE = "source.url"
DEVICE_NEEDS_ADMIN = "stream: a camera device or named pipe on the server needs the admin role; give a stream URL"


def check_source_allowed(store: Store, source: str) -> str:
    """``source`` checked (:func:`cowdetect.live.check_stream_source`) and allowed to this store's
    user: an admin may read any source; anyone else only URLs whose host is in
    ``COWDETECT_STREAM_HOSTS``, and no device or pipe (told before looking at the path, so the
    answer says nothing about which paths exist).

    Raises:
        PermissionDenied: a device or named pipe for a non-admin.
        ValueError: a bad source, or a host not allowed (:data:`cowdetect.stream_hosts.NOT_ALLOWED`).
    """
    from ..live import check_stream_source, url_scheme
    from ..stream_hosts import allowed_host

    try:
        store.require("settings")
        admin = True
    except PermissionDenied:
        admin = False
    if not admin and url_scheme(str(source)) is None:
        raise PermissionDenied(DEVICE_NEEDS_ADMIN)
    source = check_stream_source(source)
    return source if admin else allowed_host(source)


def live_settings(store: Store, source: str, model: str = "active", device: str = "auto",
                  segment_seconds: float = 10.0, duration: float | None = None, timeout: float = 5.0,
                  geometry: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    """Check and complete the settings of a live run (no connection is made here: the worker's
    first connection says within ``timeout`` seconds whether the stream answers).

    ``source``: a stream URL, camera device or named pipe (:func:`cowdetect.live.check_stream_source`);
    ``segment_seconds``: length of each MP4 segment; ``duration``: stop after this many seconds (None:
    until stopped); ``geometry``: counting lines and zones (:func:`cowdetect.counting.geometry_to_dict`);
    ``config``: :class:`~cowdetect.config.TrackConfig` fields (``batch_size`` defaults to 1 here).
    The settings' ``source`` is masked (:func:`cowdetect.live.display_source`); the URL as given is
    in ``source_url``, which :func:`create_live_run` keeps out of the stored settings.

    Raises:
        PermissionDenied: a camera device or named pipe, for a non-admin.
        ValueError: a bad source or host (:func:`check_source_allowed`), model, number or setting.
    """
    from ..live import display_source

    source = check_source_allowed(store, source)
    if not 0.5 <= segment_seconds <= MAX_SEGMENT_SECONDS:
        raise ValueError(f"segment_seconds: expected 0.5 to {MAX_SEGMENT_SECONDS:g} seconds, got {segment_seconds}")
    if duration is not None and not 0 < duration <= 10 * 365 * 86400:
        raise ValueError(f"duration: expected a positive number of seconds (or none: until stopped), got {duration}")
    if not 0.1 <= timeout <= 120:
        raise ValueError(f"timeout: expected 0.1 to 120 seconds, got {timeout}")
    if geometry is not None:
        from ..counting import check_geometry, geometry_from_dict
        # names and shapes now, before a run is stored; points against the frame once connected (the worker)
        check_geometry(*geometry_from_dict(geometry), None, None)
    track_config = check_track_config({**LIVE_CONFIG, **config})
    dev = resolve_device(device)
    ref = resolve(store, model, dev)
    # the key tells two URLs that differ only in their hidden credentials apart (two runs, not one)
    return {"source": display_source(source), "source_url": source, "source_key": source_key(store.data_dir, source),
            "model": ref.pinned, "model_label": ref.label, "device": str(dev),
            "segment_seconds": float(segment_seconds), "duration": None if duration is None else float(duration),
            "timeout": float(timeout), "geometry": geometry, "config": to_dict(track_config)}


def create_live_run(store: Store, settings: dict[str, Any]) -> int:
    """Queue a live run with checked ``settings`` (see :func:`live_settings`); returns its id. The
    URL with its credentials goes to the run folder's owner-only ``source.url``, not the database."""
    params = {k: v for k, v in settings.items() if k != "source_url"}
    run_id = create_run(store, "live", params, 0)
    write_private(live_outputs(store, run_id)["folder"] / SOURCE_FILE, settings.get("source_url", settings["source"]))
    return run_id


def _source_of(store: Store, run_id: int, settings: dict[str, Any]) -> str:
    """The run's source as given (credentials included), allowed to the user who started it."""
    path = live_outputs(store, run_id)["folder"] / SOURCE_FILE
    source = path.read_text(encoding="utf-8") if path.is_file() else settings["source"]
    return check_source_allowed(store, source)  # the admin's list or the user's role may have changed


def live_outputs(store: Store, run_id: int) -> dict[str, Path]:
    """Absolute paths of a live run's folder and preview; they may not exist yet."""
    folder = store.inside(Path("runs") / f"run-{run_id}")
    return {"folder": folder, "preview": folder / "preview.jpg"}


def live_segments(store: Store, run_id: int) -> list[Path]:
    """A live run's complete (playable) segments, oldest first."""
    from ..video import list_segments

    return list_segments(live_outputs(store, run_id)["folder"])


def _compact_counts(summary: dict[str, Any], last: int = 10) -> dict[str, Any]:
    """A counter's summary without its ever-growing lists (the last ``last`` crossings kept): a live
    run rewrites it every second."""
    lines = [{**{k: v for k, v in line.items() if k != "crossings"}, "crossings_total": len(line["crossings"]),
              "last_crossings": line["crossings"][-last:]} for line in summary.get("lines", [])]
    zones = [{**{k: v for k, v in zone.items() if k != "dwell"}, "visits": len(zone["dwell"])}
             for zone in summary.get("zones", [])]
    return {"lines": lines, "zones": zones}


class _LiveReport:
    """The live progress callback: preview, progress row and rolling metrics about once a second;
    says stop on a stop request, the CLI's signal (``stop``) or the end of ``duration``."""

    def __init__(self, store: Store, run_id: int, folder: Path, segments: Any, counter: Any, session: int,
                 duration: float | None, stop: threading.Event | None) -> None:
        self.store, self.run_id, self.folder, self.segments, self.counter = store, run_id, folder, segments, counter
        self.session, self.duration, self.stop = session, duration, stop
        self.ticker = Ticker(store, run_id)
        self.started = time.monotonic()
        self.reason: str | None = None   # why it said stop: "stop" or "duration"

    def __call__(self, stats: Any, frame: np.ndarray | None) -> bool:
        if self.duration is not None and time.monotonic() - self.started >= self.duration:
            self.reason = "duration"
            return False
        if self.stop is not None and self.stop.is_set():
            self.reason = "stop"
            return False
        if not self.ticker.due(0, 1):
            return True
        if frame is not None:
            atomic_write_bytes(self.folder / "preview.jpg", encode_image(frame, "JPEG", 85))
        self.store.update_run(self.run_id, iteration=stats.frames_out, total=stats.frames_out,
                              metrics=self.metrics(stats))
        if self.store.run(self.run_id).stop_requested:
            self.reason = "stop"
            return False
        return True

    def metrics(self, stats: Any, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run's metrics now: rolling numbers, segments, counts (and the final summary)."""
        done = list(self.segments.segments)
        # while running the row keeps the newest segments and the count (it is rewritten every second and a
        # day of 10 s segments is 8,640 entries); the final metrics list them all
        out: dict[str, Any] = {"live": stats.summary(), "segments": done if summary is not None else done[-10:],
                               "segments_total": len(done),
                               "session": self.session}
        if self.counter is not None:
            whole = self.counter.summary()
            # the final metrics (and the CLI's --json) keep every crossing and each track's dwell
            out["counts"] = whole if summary is not None else _compact_counts(whole)
        if summary is not None:
            out["summary"] = summary
        return out


def run_live(store: Store, run_id: int, log: Log | None = None, stop: threading.Event | None = None,
             on_segment: Callable[[Path], None] | None = None) -> RunRecord:
    """Run live run ``run_id`` until a stop request, ``stop`` is set (the CLI's Ctrl+C), or its duration
    ends; the job function of workers and of ``python -m cowdetect track URL``.

    Ends ``stopped`` (asked to), ``done`` (duration reached, or a stream that ended without
    reconnecting) or ``failed`` (the first connection failed: the one-line reason in the row). A
    drop mid-way is not an end: the reader reconnects and the events say so. ``on_segment(path)``
    is called with each complete segment. Returns the final row.
    """
    log = log or stderr_log
    run = start(store, run_id, "live", log)
    if run.status == "stopped":
        return run
    with recorded(store, run_id):
        settings = run.params
        ref = resolve(store, settings["model"], settings["device"])
        box = DetectorBox.open(ref, settings["device"], weights_dir=store.weights_dir)
        config = from_dict(TrackConfig, settings["config"])
        folder = live_outputs(store, run_id)["folder"]
        session = 1 + len(list(folder.glob("tracks-*.csv")))
        reader, counter = _connect(settings, _source_of(store, run_id, settings), folder / f"counts-{session}.csv")
        log(f"run {run_id}: tracking {settings['source']} ({reader.info.width}x{reader.info.height} at "
            f"{reader.info.fps:g} fps) with {settings['model_label']}")
        result, report = _stream(store, run_id, reader, box, config, counter, folder, session, settings, stop,
                                 on_segment)
        summary = {**result.as_dict(), **reader.stats.summary(events=1000)}
        status = "stopped" if report.reason == "stop" else "done"
        store.update_run(run_id, status=status, iteration=result.frames, total=result.frames,
                         metrics=report.metrics(reader.stats, summary), finished_at=now(),
                         error=None if report.reason else result.warning)
        stats = reader.stats.summary()
        log(f"run {run_id}: {status}; {result.frames} frames at {stats['fps']:.1f} fps, {stats['dropped']} dropped, "
            f"latency median {stats['latency_ms_median']} ms, {stats['reconnects']} reconnects, "
            f"{len(report.segments.segments)} segments")
        return store.run(run_id)


# crossings and zone visits a live run keeps in memory per line or zone (its counts.csv has them all)
LIVE_EVENTS_KEPT = 200


def _connect(settings: dict[str, Any], source: str, counts_csv: Path) -> tuple[Any, Any]:
    """(the StreamReader connected to ``source``, a Counter or None), counting lines checked against the
    frame size. The Counter appends each event to ``counts_csv`` as it happens and keeps only the latest
    in memory: an endless stream neither grows the process nor rewrites the file."""
    from ..live import StreamReader

    reader = StreamReader(source, timeout=settings["timeout"])
    counter = None
    if settings.get("geometry"):
        from ..counting import Counter, check_geometry, geometry_from_dict
        lines, zones = geometry_from_dict(settings["geometry"])
        try:
            check_geometry(lines, zones, reader.info.width, reader.info.height)
        except ValueError:
            reader.close()
            raise
        counter = Counter(lines, zones, keep=LIVE_EVENTS_KEPT, csv_path=counts_csv)
    return reader, counter


def _stream(store: Store, run_id: int, reader: Any, box: DetectorBox, config: TrackConfig, counter: Any,
            folder: Path, session: int, settings: dict[str, Any], stop: threading.Event | None,
            on_segment: Callable[[Path], None] | None) -> tuple[Any, _LiveReport]:
    """The pipeline over the stream, into segments and this session's track files."""
    from ..tracking import track_stream
    from ..video import SegmentWriter

    try:
        segments = SegmentWriter(folder, settings["segment_seconds"], reader.info.fps or 25.0, on_closed=on_segment)
    except BaseException:
        reader.close()
        raise
    report = _LiveReport(store, run_id, folder, segments, counter, session, settings.get("duration"), stop)
    result = track_stream(reader, box, segments, folder / f"tracks-{session}.mot.txt", folder / f"tracks-{session}.csv",
                          config, progress=report, hooks=[counter] if counter is not None else [])
    return result, report
