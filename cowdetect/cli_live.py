"""``python -m cowdetect track URL``: tracking a live stream from the command line.

``cmd_track`` (in :mod:`cowdetect.cli`) hands a live source here. The run is a ``live`` job
(:func:`cowdetect.jobs.run_live`) run in the foreground: its segments are written in the data
folder's runs/run-N/ and each complete one is copied into ``--out`` (a folder) as it closes, so a
kill -9 loses at most the open segment there too. Ctrl+C or SIGTERM stops it gracefully: the open
segment is completed, the tracks are copied and the summary printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .cli_checks import number, output_file, output_folder
from .files import atomic_write

_segment_seconds = number(float, 0.5, 3600.0, "seconds from 0.5 to 3600")
_duration = number(float, 0.0, 10 * 365 * 86400.0, "a positive number of seconds", low_open=True)
_timeout = number(float, 0.1, 120.0, "seconds from 0.1 to 120")


def add_live_options(p: argparse.ArgumentParser) -> None:
    """The options only a live stream takes (``track``'s others apply too)."""
    p.add_argument("--duration", type=_duration, default=None, metavar="SECONDS",
                   help="live stream: stop after this many seconds (default: until Ctrl+C)")
    p.add_argument("--segment-seconds", type=_segment_seconds, default=10.0, metavar="SECONDS",
                   help="live stream: length of each MP4 segment written to --out (default 10)")
    p.add_argument("--timeout", type=_timeout, default=5.0, metavar="SECONDS",
                   help="live stream: give up connecting, or count the stream as dropped, after this many "
                        "seconds without an answer (default 5)")


@contextmanager
def _graceful_stop() -> Iterator[threading.Event]:
    """An event set by the first Ctrl+C or SIGTERM (a second Ctrl+C interrupts at once)."""
    stop = threading.Event()
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        print("stopping: completing the open segment (Ctrl+C again to interrupt)", file=sys.stderr, flush=True)
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in old:
            signal.signal(sig, handler)
    try:
        yield stop
    finally:
        if in_main:
            for sig, previous in old.items():
                signal.signal(sig, previous)


def _request(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Path]:
    """(store, checked settings, the --out folder): arguments, the stream itself (one connection,
    closed again) and the model checked before a run is stored — the stream before anything that
    imports torch, so a stream that does not answer is told in about ``--timeout`` seconds."""
    from .counting import check_geometry, geometry_to_dict, named
    from .live import StreamReader, check_stream_source

    source = check_stream_source(args.video)
    if args.gt:
        raise ValueError("--gt: a live stream has no ground truth; use it with a video file")
    out = output_folder(args.out, "--out")
    for target, option in ((args.mot, "--mot"), (args.csv, "--csv")):
        if target:
            output_file(target, option)
    lines, zones = named(getattr(args, "line", None) or [], getattr(args, "zone", None) or [])
    probe = StreamReader(source, timeout=args.timeout, reconnect=False)
    probe.close()
    check_geometry(lines, zones, probe.info.width, probe.info.height)

    from . import jobs
    from .cli import track_config
    from .store import Store

    config = track_config(args)
    jobs.check_track_config(config, probe.info.width, probe.info.height)
    store = Store(args.data_dir)
    settings = jobs.live_settings(store, source, model=args.model, device=args.device,
                                  segment_seconds=args.segment_seconds, duration=args.duration, timeout=args.timeout,
                                  geometry=geometry_to_dict(lines, zones) if lines or zones else None, **config)
    return store, settings, out


def cmd_track_live(args: argparse.Namespace) -> int:
    """Track a live stream until Ctrl+C, SIGTERM or ``--duration``; print the summary."""
    from . import jobs
    from .live import display_source

    store, settings, out = _request(args)
    out.mkdir(parents=True, exist_ok=True)
    run_id = jobs.create_live_run(store, settings)
    print(f"run {run_id}: tracking {display_source(settings['source'])} live with {settings['model_label']}; "
          f"segments go to {out} (Ctrl+C stops)", file=sys.stderr, flush=True)

    def copy_segment(path: Path) -> None:
        _copy(path, out / path.name)  # never a half-copied segment in --out
        print(f"segment {path.name} complete", file=sys.stderr, flush=True)

    with _graceful_stop() as stop:
        run = jobs.run_live(store, run_id, stop=stop, on_segment=copy_segment)
    folder = jobs.live_outputs(store, run_id)["folder"]
    session = run.metrics.get("session", 1)
    copies = [(folder / f"tracks-{session}.mot.txt", out / "tracks.mot.txt"), (folder / f"tracks-{session}.csv",
              out / "tracks.csv"), (folder / f"counts-{session}.csv", out / "counts.csv")]
    copies += [(folder / f"tracks-{session}.mot.txt", Path(args.mot))] if args.mot else []
    copies += [(folder / f"tracks-{session}.csv", Path(args.csv))] if args.csv else []
    for source, target in copies:
        if source.is_file():
            _copy(source, target)
    _print_live_report(args, run, settings, out)
    return 0


def _copy(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (a reader of --out never sees half a file)."""
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))


def _print_live_report(args: argparse.Namespace, run: Any, settings: dict[str, Any], out: Path) -> None:
    from .live import display_source

    summary = run.metrics.get("summary", {})
    counts = run.metrics.get("counts", {})
    report = {"run_id": run.id, "status": run.status, "model": settings["model_label"],
              "source": display_source(settings["source"]),
              "frames": summary.get("frames", 0), "fps": summary.get("fps"), "seconds": summary.get("seconds"),
              "stream_fps": summary.get("video_fps"), "dropped": summary.get("dropped", 0),
              "dropped_per_minute": summary.get("dropped_per_minute"),
              "latency_ms_median": summary.get("latency_ms_median"), "latency_ms_p95": summary.get("latency_ms_p95"),
              "drops": summary.get("drops", 0), "reconnects": summary.get("reconnects", 0),
              "tracks": summary.get("num_tracks", 0), "max_cows_in_frame": summary.get("max_cows_in_frame", 0),
              "segments": [s["name"] for s in run.metrics.get("segments", [])], "out": str(out),
              "events": summary.get("events", []), "warning": run.error,
              **({"lines": counts.get("lines", []), "zones": counts.get("zones", [])} if counts else {})}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return
    print(f"{report['status']}: {report['frames']} frames at {report['fps']} fps, {report['dropped']} dropped, latency "
          f"median {report['latency_ms_median']} ms (95th percentile {report['latency_ms_p95']} ms), "
          f"{report['reconnects']} reconnects; {report['tracks']} cows tracked; {len(report['segments'])} segments "
          f"in {out}")
    for line in report.get("lines", []):
        print(f"line {line['name']}: {line['forward']} forward, {line['backward']} backward")
    for zone in report.get("zones", []):
        print(f"zone {zone['name']}: {zone['inside']} inside now, at most {zone['max_inside']} at once, "
              f"{zone.get('visits', len(zone.get('dwell', [])))} cows seen inside")
    if report["warning"]:
        print(f"warning: {report['warning']}", file=sys.stderr)
