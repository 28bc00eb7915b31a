"""The command line's Ray side: ``track-many`` (many videos, one Ray task each) and the cluster
options ``prelabel --ray`` shares (:mod:`cowdetect.cluster`). Every argument, file and the
cluster address are checked before anything is stored."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

from .cli_checks import distinct_files, number, output_file, output_folder, whole


def add_cluster_args(p: argparse.ArgumentParser, default: str | None) -> None:
    """``--ray``, ``--workers``, ``--gpu-fraction`` and ``--threads-per-task``."""
    p.add_argument("--ray", default=default, metavar="ADDRESS",
                   help="a Ray cluster: HOST:PORT of its head (e.g. 10.0.0.5:6379; this machine must have joined it "
                        "with `ray start --address HOST:PORT`) or 'local' (start one here)"
                        + (f" (default {default})" if default else "; without it, no Ray"))
    p.add_argument("--workers", type=whole(1, 1024), default=None,
                   help="tasks at once on a local Ray (default: one per core)")
    p.add_argument("--gpu-fraction", type=number(float, 0, 1, "a number from 0 to 1"), default=None,
                   help="share of a GPU per task (default 0.5 where the cluster has GPUs, else 0)")
    p.add_argument("--threads-per-task", type=whole(1, 64), default=1, help="CPU threads per task (default 1)")


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """The cluster options given, as keyword arguments of the jobs' settings functions, checked (Ray
    installed, the address well-formed, a head answering there) before any work — before the data
    folder is even opened. The settings functions check again (:func:`cowdetect.cluster.job_cluster`:
    the page has no such step); when a head answers, that second probe costs a millisecond."""
    from .cluster import cluster_settings, import_ray, require_reachable

    if args.ray is not None and not args.ray.strip():  # an empty variable ($HEAD unset) must not mean 'local'
        raise ValueError("--ray: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379) or 'local', got ''")
    options = {"ray": args.ray, "workers": args.workers, "threads": args.threads_per_task,
               "gpu_fraction": args.gpu_fraction}
    address = cluster_settings(**options)["address"]
    import_ray()
    require_reachable(address)
    return options


def refuse_cluster_options(args: argparse.Namespace, why: str) -> None:
    """One line when cluster options are given where they do nothing (``why``: where that is)."""
    given = [f"--{name.replace('_', '-')}" for name in ("workers", "gpu_fraction", "threads_per_task")
             if getattr(args, name) != {"threads_per_task": 1}.get(name)]
    if given:
        raise ValueError(f"{', '.join(given)}: {why}")


@contextlib.contextmanager
def ray_prints_to_stderr() -> Iterator[None]:
    """While Ray runs, its own messages (a worker died, a task retried), which it prints to stdout
    even with its workers' logs off, go to stderr: stdout stays the one JSON object ``--json`` promises."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def add_track_many_args(p: argparse.ArgumentParser) -> None:
    """``track-many``'s arguments: the videos, the model, the tracker's and the cluster's options."""
    from .cli import add_tracker_args
    from .config import MODEL_SPEC_HELP

    p.add_argument("videos", nargs="*", metavar="VIDEO", help="video files (each stored once), or 'demo'")
    p.add_argument("--resume", type=whole(1, 2**63 - 1), metavar="RUN_ID",
                   help="go on with a stopped, failed or interrupted track-many run (its videos not done)")
    p.add_argument("--out", metavar="FOLDER", help="also copy each annotated MP4 here as NAME.tracked.mp4")
    p.add_argument("--model", default="active", metavar="SPEC", help=f"the model, {MODEL_SPEC_HELP} (default: active)")
    add_tracker_args(p)
    add_cluster_args(p, "local")


def _video_files(store: Any, videos: list[str], config: dict[str, Any]) -> list[str]:
    """Check every VIDEO (a video FFmpeg decodes, frames not too large, the tile grid not too fine;
    'demo' stored already) and that no two are the same video, before any is stored."""
    import hashlib

    from . import jobs
    from .cli import _probe_video_file

    seen: dict[str, str] = {}
    for video in videos:
        if video == "demo":
            key = "demo"
            if not any(v.original_name == "demo-cows.mp4" for v in store.videos()):
                raise ValueError("no demo video in this data folder; run: python -m cowdetect demo")
        else:
            info = _probe_video_file(video)
            jobs.check_track_config(config, info.width, info.height)
            with open(video, "rb") as file:  # read in pieces: a long video need not fit in memory twice
                key = hashlib.file_digest(file, "sha256").hexdigest()
        if key in seen:
            raise ValueError(f"{seen[key]} and {video} are the same video; give each video once")
        seen[key] = video
    return videos


def cmd_track_many(args: argparse.Namespace) -> int:
    """``track-many``: store the videos, queue one run for them all, run it here (the driver)."""
    from .cli import _stored_video_id, track_config

    if args.resume is not None:
        return _resume(args)
    if not args.videos:
        raise ValueError("which videos? give one or more VIDEO files (or 'demo'), or --resume RUN_ID")
    cluster = cluster_options(args)  # first: the imports after it take seconds, a bad address is said at once
    config = track_config(args)
    from . import jobs
    from .detector import resolve_device
    from .models import resolve
    from .store import Store

    if args.out:
        for name in _out_names(list(args.videos)) if output_folder(args.out, "--out").is_dir() else []:
            output_file(str(Path(args.out) / name), "--out")  # e.g. a folder where an MP4 would go
    store = Store(args.data_dir)
    resolve(store, args.model, resolve_device("auto"))
    videos = _video_files(store, list(args.videos), config)
    if args.out:
        distinct_files([(str(Path(args.out) / name), "--out") for name in _out_names(videos)], videos)
    ids = [_stored_video_id(store, video) for video in videos]
    settings = jobs.track_many_settings(store, ids, model=args.model, **cluster, **config)
    run_id = jobs.create_track_many_run(store, settings)
    print(f"run {run_id}: tracking {len(ids)} videos on Ray with {settings['model_label']}", file=sys.stderr)
    return _run_and_report(args, store, run_id, videos)


def _resume(args: argparse.Namespace) -> int:
    """``track-many --resume RUN_ID``: its videos not done, with the run's own settings."""
    from . import jobs
    from .cli import track_config
    from .store import Store

    ignored = [option for option, given in (("VIDEO", args.videos), ("--out", args.out),
                                            ("--ray", args.ray != "local"), ("--model", args.model != "active"))
               if given]
    if ignored or track_config(args):
        raise ValueError(f"--resume: a resumed run keeps its videos and settings; give it alone, not "
                         f"{', '.join(ignored) or 'tracker options'}")
    refuse_cluster_options(args, "a resumed run keeps its settings; give --resume alone")
    store = Store(args.data_dir)
    run = store.run(args.resume)
    if run.kind != "track-many":
        raise ValueError(f"run {args.resume} is not a track-many run (its kind: {run.kind})")
    jobs.prepare_resume(store, args.resume)
    names = [store.video(v["video_id"]).original_name for v in run.params["videos"]]
    return _run_and_report(args, store, args.resume, names)


def _run_and_report(args: argparse.Namespace, store: Any, run_id: int, videos: list[str]) -> int:
    """Run track-many run ``run_id`` here and print each video's summary (``videos``: how each is named)."""
    from . import jobs

    with ray_prints_to_stderr():
        run = jobs.run_track_many(store, run_id)
    children = {c.params["video_id"]: c for c in jobs.track_many_children(store, run_id)}
    reports = [_video_report(store, children.get(v["video_id"]), name, args.out and Path(args.out) / out)
               for v, name, out in zip(run.params["videos"], videos, _out_names(videos))]
    if args.json:
        print(json.dumps({"run_id": run_id, "status": run.status, "videos": reports}, indent=2, default=str))
    else:
        for report in reports:
            print(f"{report['video']}: " + (f"{report['unique_cows']} cows tracked, {report['frames']} frames at "
                                            f"{report['fps']:.1f} fps" if report["status"] == "done"
                                            else f"{report['status']} ({report.get('error')})"))
        print(f"run {run_id}: {run.status}" + (f"; {run.error}" if run.error else ""))
    return 1 if run.status == "failed" else 0


def _out_names(videos: list[str]) -> list[str]:
    """NAME.tracked.mp4 per video; NAME-2, NAME-3... where that name is taken already."""
    names: list[str] = []
    for video in videos:
        stem, n = Path(video).stem, 1
        while (name := f"{stem}{f'-{n}' if n > 1 else ''}.tracked.mp4") in names:
            n += 1
        names.append(name)
    return names


def _video_report(store: Any, child: Any, video: str, out: Path | None) -> dict[str, Any]:
    """One video's summary: as ``track --json`` prints it (with ``video``) when its run is done, the
    annotated MP4 copied to ``out`` when given; else ``video``, ``run_id``, ``status``, ``error``."""
    from . import jobs
    from .cli import track_report

    if child is None or child.status != "done":
        return {"video": video, "run_id": child and child.id, "status": child.status if child else "not started",
                "error": child and child.error}
    target = jobs.track_outputs(store, child.id)["video"]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        target = shutil.copyfile(target, out)
    return {"video": video, **track_report(child, child.params, child.metrics, str(target))}
