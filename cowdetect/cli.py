"""The command line: ``python -m cowdetect SUBCOMMAND ...`` (see ``--help``).

Each subcommand is a thin wrapper over the same library calls the app makes. Every expected
failure — bad input, an unusable data folder (missing, read-only, full, a damaged database), a
bad checkpoint, a refused permission — is one line on stderr (``error: ...``) and exit status 2;
arguments and output paths are checked before any work, so a refused command stores nothing.
Anything else is exit status 1 and one line saying where the full traceback was written
(``<data folder>/logs/errors.log``). Progress goes to stderr, results to stdout (one JSON object
with ``--json``).

Here: the commands, each subcommand's arguments next to its handler, and :func:`main`. The
argument types and path checks are in :mod:`cowdetect.cli_checks`, the one-line error guard in
:mod:`cowdetect.cli_errors`, the admin commands (users, backup, restore) in :mod:`cowdetect.cli_admin`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from . import cli_admin, cli_export, cli_ray
from .cli_checks import Parser, UsageError, distinct_files, input_file, number, output_file, output_folder, whole
from .cli_errors import error_text, expected_errors, log_unexpected, one_line

DEFAULT_DATA_DIR = "data"


def data_dir_default() -> str:
    """``$COWDETECT_DATA_DIR`` or ``./data``."""
    return os.environ.get("COWDETECT_DATA_DIR", DEFAULT_DATA_DIR)


# -- argument types: every number is checked where argparse reads it --------------------------

_fraction = number(float, 0.0, 1.0, "a number from 0 to 1")
_positive_float = number(float, 0.0, math.inf, "a positive number", low_open=True)
_positive_int = whole(1, 10**9)
_count = whole(0, 10**9)
_run_id = whole(1, 2**63 - 1, "a run id (a whole number from 1)")  # to SQLite's largest row id
_seed = whole(0, 2**32 - 1)        # what numpy and torch both take
_threads = whole(1, 1024)
_batch = whole(1, 1024)            # a larger batch cannot fit in memory anyway
_demo_images = whole(0, 10_000)    # ~50 kB each at 640x480: half a GB at most
_demo_seconds = number(float, 0.1, 600.0, "seconds from 0.1 to 600")  # 25 fps: at least 2 frames


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _progress_printer(every: float = 1.0) -> Any:
    last = [0.0]

    def report(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every:
            last[0] = now
            print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)
    return report


SPLITS = ["train", "val", "test", "unassigned"]


def _model_args(p: argparse.ArgumentParser, default: str = "active", what: str = "the model") -> None:
    """``--model``, ``--device`` and ``--seed``: which detector a subcommand opens."""
    from .config import MODEL_SPEC_HELP

    p.add_argument("--model", default=default, metavar="SPEC", help=f"{what}, {MODEL_SPEC_HELP} "
                                                                   f"(default: {default})")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=_seed, default=0, help="seed for an untrained model's weights")


def add_demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", type=_demo_images, default=200)
    p.add_argument("--val", type=_demo_images, default=50)
    p.add_argument("--test", type=_demo_images, default=50)
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--size", default="640x480", help="image size WIDTHxHEIGHT")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--video-seconds", type=_demo_seconds, default=12.0)
    p.add_argument("--if-empty", action="store_true", help="do nothing when the data folder already has images")


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import make_demo
    from .store import Store

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected WIDTHxHEIGHT such as 640x480, got {args.size!r}") from None
    store = Store(args.data_dir)
    if args.if_empty and store.counts()["images"]:
        print(f"{store.data_dir} already holds images; demo data not generated", file=sys.stderr)
        return 0
    summary = make_demo(store, args.train, args.val, args.test, args.seed, (width, height),
                        video=not args.no_video, video_seconds=args.video_seconds,
                        progress=_progress_printer())
    summary["data_dir"] = str(store.data_dir)
    summary["counts"] = store.counts()
    if args.json:
        _print_json(summary)
    else:
        print(f"demo data in {store.data_dir}: {summary['images_added']} images added, "
              f"{summary['images_present']} already there; {summary['counts']['images']} images in total")
    return 0


def _open_detector(args: argparse.Namespace, store: Any) -> tuple[Any, Any]:
    """(DetectorBox, ModelRef) for ``--model`` (a model spec; stderr says which model and why)."""
    from .detector import DetectorBox
    from .models import resolve

    ref = resolve(store, args.model, args.device)
    box = DetectorBox.open(ref, args.device, classes=store.classes(), weights_dir=store.weights_dir, seed=args.seed)
    print(f"model: {box.origin}", file=sys.stderr)
    return box, ref


def _tiles_arg(p: argparse.ArgumentParser) -> None:
    from .tiling import TILES_HELP

    p.add_argument("--tiles", default="off", help=f"sliced inference for small, distant cows: {TILES_HELP} "
                                                  "(default off)")


def add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    _model_args(p)
    _tiles_arg(p)
    p.add_argument("--score-threshold", type=_fraction, default=0.5)
    p.add_argument("--out", help="also write the image with boxes drawn (PNG/JPEG)")


# what PIL writes by the file name's suffix (predict --out)
DRAWN_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def cmd_predict(args: argparse.Namespace) -> int:
    from .images import load_image
    from .store import Store

    from .tiling import check_grid, parse_tiles

    tiles = parse_tiles(args.tiles)  # checked before any work
    if args.out:
        output_file(args.out, "--out", DRAWN_SUFFIXES)
        distinct_files([(args.out, "--out")], [args.image])
    store = Store(args.data_dir)
    image = load_image(args.image)
    check_grid(tiles, image.shape[1], image.shape[0])
    box, ref = _open_detector(args, store)
    label = ref.label
    if args.out:
        dets, drawn = box.predict(image, visualize=True, score_threshold=args.score_threshold, tiles=tiles)
        from PIL import Image
        Image.fromarray(drawn).save(args.out)
    else:
        dets = box.predict(image, score_threshold=args.score_threshold, tiles=tiles)
    view = dets.to_detectron2()
    if args.json:
        _print_json({"image": args.image, "model": label, **view})
    else:
        print(f"{len(dets)} detections by {label} (score >= {args.score_threshold})")
        for cls, name, b, s in zip(view["pred_classes"], view["class_names"], view["pred_boxes"], view["scores"]):
            print(f"  {name:>12} (id {cls:2d})  score {s:.3f}  box {b}")
    return 0


def add_train_args(p: argparse.ArgumentParser) -> None:
    from .config import RUN_DEFAULTS

    _model_args(p, "pretrained", "the model to start from")
    p.add_argument("--iterations", type=_positive_int, default=None, help=f"default {RUN_DEFAULTS['iterations']}")
    p.add_argument("--batch-size", type=_batch, default=None,
                   help="default: the architecture's (SSD 8, Faster R-CNN 2)")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="default: the architecture's (SSD 0.004, Faster R-CNN 0.01)")
    p.add_argument("--split", default="train")
    p.add_argument("--checkpoint-every", type=_count, default=None,
                   help=f"iterations between checkpoints (0: none; default {RUN_DEFAULTS['checkpoint_every']})")
    p.add_argument("--eval-every", type=_count, default=None, help="iterations between validation loss / mAP on the "
                   f"val split (0: none; default {RUN_DEFAULTS['eval_every']})")
    p.add_argument("--patience", type=_count, default=None, help="early stop after this many evaluations without a "
                                                              "better val mAP (0: never, the default)")
    p.add_argument("--resume", type=_run_id, metavar="RUN_ID", help="continue a stopped, failed or interrupted run")
    p.add_argument("--freeze-backbone", action="store_true")
    p.add_argument("--backbone-lr", type=_fraction, default=None,
                   help="the backbone's learning rate as a fraction of the heads' (0-1; default: the architecture's)")
    p.add_argument("--tile-crops", type=_fraction, default=None, help="probability of training on a tile-sized "
                   "crop, to learn small cows at the scale tiles show them (0-1; default: the architecture's)")
    p.add_argument("--keep-start", type=_fraction, default=None, help="WiSE-FT: mix this fraction of the starting "
                   "weights into the final ones, so fine-tuning forgets less (0-1; default: the architecture's)")
    p.add_argument("--name", help="model version name (default: architecture + run id)")
    p.add_argument("--log-every", type=_positive_float, default=5.0, help="seconds between progress lines")
    scale = p.add_argument_group("several processes or machines (DistributedDataParallel through torchrun)")
    scale.add_argument("--nproc", type=whole(1, 1024, "a number of processes from 1 to 1024"), default=None,
                       help="training processes on this machine: one per GPU, or CPU processes (default 1); "
                            "--batch-size is shared out among all of them")
    scale.add_argument("--nnodes", type=whole(1, 1024, "a number of machines from 1 to 1024"), default=None,
                       help="machines taking part (default 1); the others run the --join line this one prints")
    scale.add_argument("--rdzv-endpoint", metavar="HOST:PORT", default=None,
                       help="with --nnodes > 1: node 0's address and a free port, reachable from every machine")
    scale.add_argument("--node-rank", type=whole(0, 1023), default=0,
                       help="this machine's number with --join (1 or more)")
    scale.add_argument("--join", type=_run_id, metavar="RUN_ID", default=None,
                       help="take part in run RUN_ID that node 0 started (with --node-rank and --rdzv-endpoint)")
    scale.add_argument("--rdzv-timeout", type=whole(1, 86_400), default=300,
                       help="seconds node 0 waits for the other machines (default 300)")


def _ignored_by_join(args: argparse.Namespace) -> list[str]:
    """The training options given with --join (each differs from its default), as --option names."""
    defaults = argparse.ArgumentParser(add_help=False)
    add_train_args(defaults)
    own = {"join", "node_rank", "rdzv_endpoint", "rdzv_timeout", "log_every", "nproc", "nnodes"}
    return [f"--{dest.replace('_', '-')}" for dest, value in vars(defaults.parse_args([])).items()
            if dest not in own and getattr(args, dest, value) != value]


def cmd_train(args: argparse.Namespace) -> int:
    from . import jobs
    from .store import Store

    from .distributed import check_launch, same_processes

    store = Store(args.data_dir)
    if args.join is not None:  # another machine's run: this one only adds its processes
        from .jobs.train import join_training
        ignored = _ignored_by_join(args)
        if ignored:  # the run's own settings apply: silently dropping these would mislead
            raise ValueError(f"join: {', '.join(ignored)} cannot be given with --join (the run keeps the settings "
                             f"node 0 started it with); give only --node-rank, --rdzv-endpoint and --data-dir")
        same_processes(store.run(args.join).params, args.nproc, args.nnodes)
        code = join_training(store, args.join, args.node_rank, args.rdzv_endpoint, args.rdzv_timeout, args.log_every)
        print(f"machine {args.node_rank} of run {args.join}: " + ("finished" if code == 0 else
              f"torchrun ended with status {code} (node 0's log says why)"), file=sys.stderr)
        return 0 if code == 0 else 1
    if args.resume is not None:
        resumed = store.run(args.resume)
        if resumed.kind != "train":  # before prepare_resume queues it again
            raise ValueError(f"run {args.resume} is a {resumed.kind} run, not a training run")
        same_processes(resumed.params, args.nproc, args.nnodes)
        check_launch(int(resumed.params.get("nnodes", 1)), args.node_rank, args.rdzv_endpoint, False)
        jobs.prepare_resume(store, args.resume)
        run_id = args.resume
    else:
        check_launch(args.nnodes or 1, args.node_rank, args.rdzv_endpoint, joining=False)
        settings = jobs.training_settings(
            store, base=args.model, iterations=args.iterations, batch_size=args.batch_size, learning_rate=args.lr,
            checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, patience=args.patience,
            freeze_backbone=args.freeze_backbone, backbone_lr=args.backbone_lr, tile_crops=args.tile_crops,
            keep_start=args.keep_start, train_split=args.split, device=args.device, name=args.name,
            seed=args.seed, nproc=args.nproc or 1, nnodes=args.nnodes or 1)
        run_id = jobs.create_training_run(store, settings)
    print(f"run {run_id}", file=sys.stderr)
    run = jobs.run_training(store, run_id, log_every=args.log_every, rdzv_endpoint=args.rdzv_endpoint,
                            rdzv_timeout=args.rdzv_timeout)
    summary = {"run_id": run_id, "status": run.status, "iteration": run.iteration,
               "checkpoint_iteration": run.checkpoint_iteration, "seconds": run.metrics.get("seconds"),
               "base": run.params["base_label"], "before": run.metrics.get("before"),
               "after": run.metrics.get("after")}
    if run.model_id:
        record = store.model(run.model_id)
        summary.update(model=record.name, model_id=record.id, checkpoint=str(record.checkpoint),
                       iterations=record.params.get("iterations"))
    if args.json:
        _print_json(summary)
    elif run.status == "done":
        print(f"saved model {summary['model']} (#{summary['model_id']}; {run.iteration} iterations in "
              f"{summary['seconds']:.0f}s); {jobs.moo(run.metrics)}")
    else:
        print(f"run {run_id} {run.status} at iteration {run.iteration} (checkpoint "
              f"{run.checkpoint_iteration}); continue with: train --resume {run_id}")
    return 0 if run.status in ("done", "stopped") else 1  # interrupted (a process of several ended)


def cmd_runs(args: argparse.Namespace) -> int:
    from . import jobs
    from .store import Store

    rows = jobs.runs_table(Store(args.data_dir))
    if args.json:
        _print_json(rows)
    else:
        if not rows:
            print("no runs yet")
        for r in rows:
            print(f"{r['id']:>4}  {r['kind']:<8} {r['status']:<12} {r['iteration']}/{r['total']}  "
                  f"checkpoint {r['checkpoint_iteration']}")
    return 0


def add_worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", type=_run_id)


def cmd_worker(args: argparse.Namespace) -> int:
    from . import jobs
    from .store import Store

    jobs.install_sigterm_handler()
    jobs.run_job(Store(args.data_dir), args.run_id)
    return 0


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    _tiles_arg(p)
    p.add_argument("--split", default="test")
    p.add_argument("--predictions", metavar="OUT.json",
                   help="also write the detections in COCO results format (ids as in export-coco --split S)")
    p.add_argument("--backend", choices=["faster_coco_eval", "pycocotools"], default=None,
                   help="COCO evaluation code (default: faster_coco_eval when installed; same numbers)")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .store import Store

    from .store import hash_dataset
    from .tiling import tiled_label, tiles_text

    tiles = tiles_text(args.tiles)  # checked before any work
    if args.predictions:
        output_file(args.predictions, "--predictions")
    store = Store(args.data_dir)
    dataset = store.dataset(args.split)
    if not len(dataset):
        raise ValueError(f"split {args.split!r} has no labeled images to evaluate on")
    box, ref = _open_detector(args, store)
    label = tiled_label(ref.label, tiles)
    print(f"evaluating {label} on {len(dataset)} {args.split} images", file=sys.stderr)
    predictions = box.predict_dataset(dataset, tiles=tiles)
    result = box.evaluate(dataset, predictions=predictions, backend=args.backend)
    metrics = result.as_dict()
    store.add_result(label, args.split, hash_dataset(dataset), metrics, ref.model_id, tiles)
    if args.predictions:
        from .files import atomic_write_bytes
        from .formats import coco_results
        detections = coco_results(store, predictions, [s.image_id for s in dataset])
        atomic_write_bytes(args.predictions, json.dumps(detections).encode())
        print(f"wrote {len(detections)} detections to {args.predictions} (COCO results format; ids as in "
              f"export-coco --split {args.split})", file=sys.stderr)
    if args.json:
        _print_json({"model": label, "split": args.split, **{k: v for k, v in metrics.items() if k != "pr_curve"}})
    else:
        print(f"{label} on {args.split} ({result.num_images} images, {result.num_ground_truth} boxes): "
              f"mAP {result.map:.4f}  mAP50 {result.map_50:.4f}  mAP75 {result.map_75:.4f}")
    return 0


def add_prelabel_args(p: argparse.ArgumentParser) -> None:
    from .config import MODEL_SPEC_HELP

    p.add_argument("--split", default=None, help="pre-label the unlabeled images of this split")
    p.add_argument("--unlabeled", action="store_true", help="pre-label the unlabeled images of every split")
    p.add_argument("--model", default="active", metavar="SPEC", help=f"the model, {MODEL_SPEC_HELP} (default: active)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--score-threshold", type=_fraction, default=0.5,
                   help="keep boxes scoring at least this (default 0.5)")
    p.add_argument("--resume", type=_run_id, metavar="RUN_ID",
                   help="continue a stopped, failed or interrupted pre-label run (images it did are kept)")
    _tiles_arg(p)
    cli_ray.add_cluster_args(p, None)


def cmd_prelabel(args: argparse.Namespace) -> int:
    from . import jobs
    from .store import Store

    if args.ray is None:
        cli_ray.refuse_cluster_options(args, "they set how a pre-label run uses Ray; add --ray local or --ray ADDRESS")
    elif args.resume is not None:
        raise ValueError("--ray: a resumed run keeps where it ran; give --resume alone")
    if args.resume is None and args.split is None and not args.unlabeled:
        raise ValueError("which images? give --split S (its unlabeled images) or --unlabeled (every split's)")
    cluster = cli_ray.cluster_options(args) if args.ray is not None else {}  # before the data folder is opened
    store = Store(args.data_dir)
    if args.resume is not None:
        resumed = store.run(args.resume)
        if resumed.kind != "prelabel":
            raise ValueError(f"run {args.resume} is not a pre-label run (its kind: {resumed.kind})")
        jobs.prepare_resume(store, args.resume)
        run_id, settings = args.resume, resumed.params
    else:
        settings = jobs.prelabel_settings(store, model=args.model, split=args.split, unlabeled=args.unlabeled,
                                          score_threshold=args.score_threshold, device=args.device, tiles=args.tiles,
                                          **cluster)
        run_id = jobs.create_prelabel_run(store, settings)
    print(f"run {run_id}: pre-labeling with {settings['model_label']}", file=sys.stderr)
    with cli_ray.ray_prints_to_stderr():
        run = jobs.run_prelabel(store, run_id)
    report = {"run_id": run_id, "status": run.status, "model": settings["model_label"],
              "images": run.metrics.get("images", 0), "boxes": run.metrics.get("boxes", 0)}
    if args.json:
        _print_json(report)
    else:
        print(f"{report['boxes']} boxes suggested on {report['images']} images by {report['model']} "
              f"(run {run_id}, {run.status}); review them on the Label page")
    return 0


def add_track_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="a video file, 'demo' for the demo video (it has ground truth), or a live stream: "
                                 "rtsp://, http(s)://, udp://, srt:// URL, /dev/video* camera or named pipe")
    p.add_argument("--out", required=True, help="annotated H.264 MP4 to write; for a live stream, a folder for its "
                                                "MP4 segments")
    _model_args(p)
    p.add_argument("--gt", help="MOTChallenge ground truth for VIDEO: prints MOTA and IDF1")
    p.add_argument("--mot", help="also write the tracks as MOTChallenge text")
    p.add_argument("--csv", help="also write the tracks as CSV (frame, time_s, id, x1, y1, x2, y2, score)")
    add_tracker_args(p)
    from .cli_live import add_live_options

    add_live_options(p)
    from .cli_checks import counting_line, counting_zone

    p.add_argument("--line", action="append", type=counting_line, metavar="[NAME=]X1,Y1,X2,Y2",
                   help="a counting line in pixels (repeatable): crossings each way, forward = from its left to its "
                        "right looking from X1,Y1 to X2,Y2. Lines and zones given are saved with the video; none "
                        "given: the video's saved ones")
    p.add_argument("--zone", action="append", type=counting_zone, metavar="[NAME=]X,Y,X,Y,X,Y,...",
                   help="a counting zone, a polygon's corners in order in pixels (repeatable): cows inside per "
                        "frame and each cow's time inside")


def add_tracker_args(p: argparse.ArgumentParser) -> None:
    """The tracker and detection settings of ``track`` and ``track-many`` (TrackConfig's fields)."""
    p.add_argument("--score-threshold", type=_fraction, default=None, help="default 0.4")
    p.add_argument("--distance", choices=["iou", "centroid"], default=None, help="default iou")
    p.add_argument("--distance-threshold", type=_positive_float, default=None, help="default: iou 0.8, centroid 0.5")
    p.add_argument("--hit-counter-max", type=_positive_int, default=None,
                   help="frames a lost track survives (default 30)")
    p.add_argument("--initialization-delay", type=_count, default=None, help="frames before a new id (default 3)")
    p.add_argument("--low-score-threshold", type=_fraction, default=None,
                   help="detections from this score up to --score-threshold only extend tracks left unmatched "
                        "(ByteTrack's second association; default 0.1, 0 = off)")
    p.add_argument("--reid-distance-threshold", type=_fraction, default=None,
                   help="a new track that looks like one lost nearby (colour histogram distance 0-1 at most this) "
                        "takes its id (Norfair's ReID; default 0.4, 0 = off)")
    p.add_argument("--reid-hit-counter-max", type=_positive_int, default=None,
                   help="frames a lost track can still be re-identified (default 50)")
    p.add_argument("--detect-every", type=_positive_int, default=None, help="detect every k-th frame (default 3)")
    p.add_argument("--batch-size", type=_batch, default=None, help="frames per detector batch (default 4)")
    _tiles_arg(p)


def track_config(args: argparse.Namespace) -> dict[str, Any]:
    """The tracker settings given on the command line (defaults left out), checked before any work."""
    from . import jobs
    from .config import TrackConfig
    from .tiling import tiles_text

    tiles = tiles_text(args.tiles)
    defaults = TrackConfig()
    config = {k: v for k, v in {
        "score_threshold": args.score_threshold, "distance": args.distance,
        "distance_threshold": args.distance_threshold, "hit_counter_max": args.hit_counter_max,
        "initialization_delay": args.initialization_delay, "detect_every": args.detect_every,
        "batch_size": args.batch_size, "tiles": tiles, "reid_hit_counter_max": args.reid_hit_counter_max,
    }.items() if v is not None and v != getattr(defaults, k)}
    for name in ("low_score_threshold", "reid_distance_threshold"):  # 0 turns it off: None in TrackConfig
        given = getattr(args, name)
        if given is not None and (given or None) != getattr(defaults, name):
            config[name] = given or None
    jobs.check_track_config(config)
    return config


def _ground_truth(path: str) -> str:
    """The text of ``--gt``, checked to be MOTChallenge text before any work (errors name the user's file)."""
    from .mot import read_mot

    input_file(path, "--gt")
    try:
        truth = read_mot(path)
    except ValueError as exc:
        raise ValueError(f"--gt {path}: {str(exc).removeprefix(f'MOT file {Path(path).name}: ')}") from None
    if not (truth["conf"] != 0).any():  # else the run would end without scores, after all the work
        raise ValueError(f"--gt {path}: no boxes to score against (the file is empty, or every row is "
                         f"marked ignored with conf 0)")
    return Path(path).read_text()


def _track_request(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(store, checked run settings) of ``track``: the settings, output paths,
    ground truth, model and the video's frames are all checked before the video is stored."""
    from . import jobs
    from .detector import resolve_device
    from .models import resolve
    from .store import Store

    from .geometry import check_geometry, geometry_to_dict, named

    config = track_config(args)
    lines, zones = named(args.line or [], args.zone or [])
    geometry = geometry_to_dict(lines, zones) if lines or zones else None  # None: the video's saved ones
    outputs = ((args.out, "--out"), (args.mot, "--mot"), (args.csv, "--csv"))
    for target, option in outputs:
        if target:
            output_file(target, option)
    distinct_files(outputs, [args.video, args.gt])
    gt_text = _ground_truth(args.gt) if args.gt else None
    store = Store(args.data_dir)
    resolve(store, args.model, resolve_device(args.device))
    if args.video != "demo":  # a grid too fine for the frames, or frames too large, store nothing
        info = _probe_video_file(args.video)
        jobs.check_track_config(config, info.width, info.height)
        check_geometry(lines, zones, info.width, info.height)
    video_id = _stored_video_id(store, args.video, gt_text)
    settings = jobs.tracking_settings(store, video_id, model=args.model, device=args.device, geometry=geometry,
                                      **config)
    if geometry is not None:  # kept with the video: a re-run with other tracker settings counts on them
        store.set_video_geometry(video_id, geometry)
    return store, settings


def cmd_track(args: argparse.Namespace) -> int:
    import shutil

    from . import jobs
    from .live import is_live_source

    if is_live_source(args.video):
        from .cli_live import cmd_track_live
        return cmd_track_live(args)

    store, settings = _track_request(args)
    run_id = jobs.create_tracking_run(store, settings)
    print(f"run {run_id}: tracking with {settings['model_label']}", file=sys.stderr)
    run = jobs.run_tracking(store, run_id)
    outputs = jobs.track_outputs(store, run_id)
    metrics = dict(run.metrics)
    if args.gt:  # the file given here wins over ground truth stored with the video (or its absence)
        from .mot import mot_scores, read_mot
        metrics["mot"] = mot_scores(read_mot(args.gt), read_mot(outputs["mot"]),
                                    num_frames=metrics["summary"]["frames"])
    for target, key in ((args.out, "video"), (args.mot, "mot"), (args.csv, "csv")):
        if target:
            shutil.copyfile(outputs[key], target)
    _print_track_report(args, run, settings, metrics)
    return 0


def track_report(run: Any, settings: dict[str, Any], metrics: dict[str, Any], out: str | None) -> dict[str, Any]:
    """What ``track --json`` prints of a finished tracking run (and ``track-many --json`` per video)."""
    summary = metrics["summary"]
    return {"run_id": run.id, "status": run.status, "model": settings["model_label"],
              "frames": summary["frames"], "video_fps": summary["video_fps"], "fps": summary["fps"],
              "seconds": summary["seconds"], "tracks": summary["num_tracks"], "unique_cows": summary["num_tracks"],
              "max_cows_in_frame": summary["max_cows_in_frame"], "warning": summary["warning"],
              "out": out, **({"mota": metrics["mot"]["mota"], "idf1": metrics["mot"]["idf1"],
                                    "id_switches": metrics["mot"]["id_switches"],
                                    "fragmentations": metrics["mot"]["fragmentations"]} if "mot" in metrics else {}),
              # frames where tracking broke, worth labeling: import-video VIDEO --from-run RUN_ID adds them
              "to_label": metrics.get("to_label", []),
              # counting lines (crossings each way) and zones (most inside at once, each track's seconds inside)
              **{key: metrics.get("counts", {}).get(key, []) for key in ("lines", "zones")}}


def _print_track_report(args: argparse.Namespace, run: Any, settings: dict[str, Any], metrics: dict[str, Any]
                        ) -> None:
    report = track_report(run, settings, metrics, args.out)
    if args.json:
        _print_json(report)
        return
    print(f"{report['frames']} frames at {report['fps']:.1f} fps: {report['unique_cows']} cows tracked "
          f"(at most {report['max_cows_in_frame']} at once); wrote {args.out}"
          + (f"; MOTA {report['mota']:.3f}, IDF1 {report['idf1']:.3f}" if "mota" in report else ""))
    for line in report["lines"]:
        (x1, y1), (x2, y2) = line["points"]
        print(f"line {line['name']} ({x1:g},{y1:g} -> {x2:g},{y2:g}): {line['forward']} forward, "
              f"{line['backward']} backward")
    for zone in report["zones"]:
        dwell = ", ".join(f"#{d['track_id']} {d['seconds']:.1f} s" for d in zone["dwell"]) or "nobody"
        print(f"zone {zone['name']}: at most {zone['max_inside']} inside at once; time inside: {dwell}")
    if report["to_label"]:
        print(f"{len(report['to_label'])} frames worth labeling (where tracking broke): "
              f"python -m cowdetect import-video {args.video} --from-run {run.id}")
    if report["warning"]:
        print(f"warning: {report['warning']}", file=sys.stderr)


def _nothing_imported(skipped: Sequence[tuple[str, str]], what: str) -> ValueError:
    """The one-line error of an import that skipped everything it was given: the first reasons."""
    shown = "; ".join(f"{name}: {reason}" for name, reason in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return ValueError(f"nothing imported: {len(skipped)} {what}{'s' * (len(skipped) != 1)} skipped ({shown}{more})")


def _report(args: argparse.Namespace, report: Any) -> int:
    """Print an ImportReport: the summary, then each skipped file and why (stderr). When every file
    was skipped (none added or found already stored), that is an error: exit 2, the first reasons."""
    if args.json:
        _print_json({"added": report.added, "already_present": report.already_present, "boxes": report.boxes,
                     "skipped": [{"name": n, "reason": r} for n, r in report.skipped]})
    if report.skipped and not report.added and not report.already_present:
        raise _nothing_imported(report.skipped, "file")
    if not args.json:
        print(report.summary())
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    return 0


def add_import_images_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+")
    p.add_argument("--split", default="unassigned", choices=SPLITS)


def cmd_import_images(args: argparse.Namespace) -> int:
    from .formats import import_images
    from .store import Store

    files = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"{name}: " + (f"a folder; give the image files (e.g. {name}/*.jpg) or a zip"
                                            if path.is_dir() else "not a regular file" if path.exists()
                                            else "no such file"))
        files.append((path.name, path.read_bytes()))
    return _report(args, import_images(Store(args.data_dir), files, split=args.split))


def add_import_coco_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("json_file", metavar="JSON")
    p.add_argument("images_dir", metavar="IMAGES_DIR")
    p.add_argument("--category", default="cow", help="category name to import, or 'all' (default cow)")
    p.add_argument("--split", default="unassigned", choices=SPLITS)
    p.add_argument("--include-negatives", action="store_true", help="also import images without the category")


def cmd_import_coco(args: argparse.Namespace) -> int:
    from .formats import import_coco
    from .store import Store

    if not Path(args.images_dir).is_dir():
        raise ValueError(f"IMAGES_DIR {args.images_dir}: " + ("a file, not a folder" if Path(args.images_dir).exists()
                                                              else "no such folder"))
    input_file(args.json_file, "COCO JSON")
    report = import_coco(Store(args.data_dir), Path(args.json_file), Path(args.images_dir),
                         category=None if args.category == "all" else args.category, split=args.split,
                         include_negatives=args.include_negatives)
    return _report(args, report)


def add_import_deeplake_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default="hub://activeloop/coco-train")
    p.add_argument("--category", default="cow")
    p.add_argument("--limit", type=_count, default=100, help="at most this many images (0: all)")
    p.add_argument("--split", default="unassigned", choices=SPLITS)


def cmd_import_deeplake(args: argparse.Namespace) -> int:
    from .formats import import_deeplake
    from .store import Store

    report = import_deeplake(Store(args.data_dir), args.source, category=None if args.category == "all"
                             else args.category, limit=args.limit or None, split=args.split)
    return _report(args, report)


def add_import_video_args(p: argparse.ArgumentParser) -> None:
    from .frames import MIN_CHANGE_BITS

    p.add_argument("video", help="a video file (stored first, once), or 'demo' for the demo video")
    how = p.add_argument_group("which frames (one of; default --every 1)")
    how.add_argument("--every", type=_positive_float, default=None, metavar="SECONDS",
                     help="the first frame at or after every SECONDS of the video (by each frame's own time)")
    how.add_argument("--count", type=_positive_int, default=None, metavar="N",
                     help="N frames spread evenly over the video")
    p.add_argument("--split", default="unassigned", help="split of the new images (default unassigned)")
    p.add_argument("--min-change", type=whole(0, 64), default=MIN_CHANGE_BITS, metavar="BITS",
                   help="skip a frame whose perceptual hash differs from the last kept frame's in fewer of its 64 "
                        f"bits (0 keeps all; default {MIN_CHANGE_BITS})")
    p.add_argument("--from-run", type=_run_id, default=None, metavar="RUN_ID",
                   help="instead of sampling: the frames tracking run RUN_ID found worth labeling (where tracking "
                        "broke; listed by `track --json` as to_label), with the tracker's boxes as suggestions")


def _stored_video_id(store: Any, video: str, ground_truth: str | None = None) -> int:
    """The id of VIDEO as track and import-video take it: 'demo', or a file (stored first, once)."""
    from . import jobs

    if video == "demo":
        demo = [v for v in store.videos() if v.original_name == "demo-cows.mp4"]
        if not demo:
            raise ValueError("no demo video in this data folder; run: python -m cowdetect demo")
        return demo[-1].id
    path = input_file(video, "video")
    record, note = jobs.add_video(store, path.read_bytes(), path.name, ground_truth)
    print(note, file=sys.stderr)
    return record.id


def _probe_video_file(video: str) -> Any:
    """The :class:`~cowdetect.video.VideoInfo` of a video file given on the command line, checked as
    an upload is (a known suffix, a decodable frame, frames not too large) before it is stored."""
    from . import jobs

    path = input_file(video, "video")
    return jobs.check_video_file(path, path.name)


def _run_video_id(store: Any, video: str, run_id: int) -> int:
    """The video tracking run ``run_id`` tracked, checked to be VIDEO (before anything is stored)."""
    from .store.base import sha256_hex

    run = store.run(run_id)
    if run.kind != "track":
        raise ValueError(f"run {run_id} is a {run.kind} run, not a tracking run")
    tracked = store.video(run.params["video_id"])
    same = tracked.original_name == "demo-cows.mp4" if video == "demo" else \
        Path(video).is_file() and sha256_hex(Path(video).read_bytes()) == tracked.sha256
    if not same:
        raise ValueError(f"video {video}: not the video run {run_id} tracked ({tracked.original_name}, "
                         f"video {tracked.id})")
    return tracked.id


def cmd_import_video(args: argparse.Namespace) -> int:
    from . import jobs
    from .frames import MIN_CHANGE_BITS, check_settings
    from .store import Store

    check_settings(args.every, args.count, args.split, args.min_change)  # before the video is stored
    store = Store(args.data_dir)
    if args.from_run is not None:
        if args.every is not None or args.count is not None or args.min_change != MIN_CHANGE_BITS:
            raise ValueError("--from-run takes the frames the run found; leave out --every, --count and --min-change")
        video_id = _run_video_id(store, args.video, args.from_run)
    else:
        video_id = _stored_video_id(store, args.video)
    settings = jobs.frames_settings(store, video_id, every=args.every, count=args.count, split=args.split,
                                    min_change=args.min_change, from_run=args.from_run)
    run = jobs.run_frames(store, jobs.create_frames_run(store, settings))  # the page's job, in the foreground
    result = jobs.frame_import_of(run)
    if args.json:
        _print_json({**result.as_dict(), "run_id": run.id})
    if result.skipped and not result.added and not result.images:
        raise _nothing_imported([(f"frame {s['frame']}", s["reason"]) for s in result.skipped], "frame")
    if not args.json:
        print(result.summary())
    for skip in result.skipped:
        print(f"skipped frame {skip['frame']}: {skip['reason']}", file=sys.stderr)
    if result.warning:
        print(f"warning: {result.warning}", file=sys.stderr)
    return 0


def add_export_coco_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT.json")
    p.add_argument("--split", default=None, choices=SPLITS, help="default: all splits")
    p.add_argument("--images-dir", default=None, help="also copy the images there, named as in the JSON")


def cmd_export_coco(args: argparse.Namespace) -> int:
    from .formats import write_coco
    from .store import Store

    output_file(args.out, "OUT.json")
    if args.images_dir is not None:
        output_folder(args.images_dir, "--images-dir")
    counts = write_coco(Store(args.data_dir), args.out, split=args.split, images_dir=args.images_dir)
    if args.json:
        _print_json({"out": args.out, **counts})
    else:
        print(f"wrote {args.out}: {counts['images']} images, {counts['annotations']} boxes")
    return 0


def add_export_yolo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="DIR")


def cmd_export_yolo(args: argparse.Namespace) -> int:
    from .formats import export_yolo
    from .store import Store

    output_folder(args.out_dir, "DIR")
    counts = export_yolo(Store(args.data_dir), args.out_dir)
    if args.json:
        _print_json({"out_dir": args.out_dir, **counts})
    else:
        print(f"wrote {args.out_dir}/data.yaml: " + ", ".join(f"{s} {n} images" for s, n in counts.items()))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .store import Store

    store = Store(args.data_dir)
    # labeling effort per suggestion source: a version's own rows, then sources without a stored
    # version (pretrained, tracker, a deleted version) as rows with id None, so the list stays a list
    effort = store.effort()
    rows = [{"id": m.id, "name": m.name, "architecture": m.architecture, "classes": list(m.classes),
             "parent_id": m.parent_id, "created_at": m.created_at, "checkpoint": str(m.checkpoint),
             "effort": [e for e in effort if e["model_id"] == m.id]} for m in store.models()]
    known = {m["id"] for m in rows}
    rows += [{"id": None, "name": e["source"], "architecture": None, "classes": [], "parent_id": None,
              "created_at": None, "checkpoint": None, "effort": [e]} for e in effort if e["model_id"] not in known]
    if args.json:
        _print_json(rows)
    else:
        for r in rows or [{"id": "-", "name": "(no models yet)", "architecture": "", "created_at": "", "effort": []}]:
            print(f"{r['id'] or '-':>4}  {r['name']:<32} {r['architecture'] or '':<40} {r['created_at'] or ''}")
            for e in r["effort"]:
                print(f"      effort of {e['source']}: {e['images']} images reviewed, {e['unchanged']} of "
                      f"{e['suggested']} suggested boxes kept unchanged, {e['changed']} changed, {e['deleted']} "
                      f"deleted, {e['added']} added")
    return 0


ArgAdder = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]

# (name, help, arguments, handler), in the order ``--help`` lists them
COMMANDS: list[tuple[str, str, ArgAdder | None, Handler]] = [
    ("demo", "generate the embedded demo images, boxes, splits and video", add_demo_args, cmd_demo),
    ("predict", "detect cows in an image", add_predict_args, cmd_predict),
    ("train", "fine-tune a detector on the store's labeled images", add_train_args, cmd_train),
    ("evaluate", "mAP of a model on a split", add_evaluate_args, cmd_evaluate),
    ("prelabel", "suggest boxes for every unlabeled image of a split (reviewed on the Label page)",
     add_prelabel_args, cmd_prelabel),
    ("track", "follow each cow through a video (Norfair); write the annotated video and tracks",
     add_track_args, cmd_track),
    ("track-many", "track many videos on a Ray cluster (a local one by default), one task per video; only this "
     "process writes the data folder", cli_ray.add_track_many_args, cli_ray.cmd_track_many),
    ("import-images", "add image files (jpg, png, webp, bmp) and zips of them, unlabeled",
     add_import_images_args, cmd_import_images),
    ("import-coco", "import a COCO instances JSON and its images folder, filtered to a category",
     add_import_coco_args, cmd_import_coco),
    ("import-deeplake", "import images of a category from a Deep Lake dataset with COCO's columns",
     add_import_deeplake_args, cmd_import_deeplake),
    ("import-video", "add frames of a video as unlabeled images: one every N seconds or N in all, near-duplicates "
     "skipped", add_import_video_args, cmd_import_video),
    ("export-coco", "write the labeled images as a COCO instances JSON", add_export_coco_args, cmd_export_coco),
    ("export-yolo", "write the labeled images as an Ultralytics YOLO dataset (data.yaml, images/, labels/)",
     add_export_yolo_args, cmd_export_yolo),
    ("export-model", "write a model as one ONNX file for edge devices (RGB image in, xyxy pixel boxes out)",
     cli_export.add_export_model_args, cli_export.cmd_export_model),
    ("models", "list stored model versions and the labeling effort of their suggestions", None, cmd_models),
    ("runs", "list training and tracking runs: id, kind, status, progress, checkpoint_iteration", None, cmd_runs),
    ("worker", "run one queued job (the app starts these in the background)", add_worker_args, cmd_worker),
    ("users", "accounts for a shared app: add NAME --role R, list, remove NAME, set-role, set-password",
     cli_admin.add_users_args, cli_admin.cmd_users),
    ("backup", "copy the data folder (database, images, models, runs, videos) into one .tar[.gz], also "
     "while the app and jobs run", cli_admin.add_backup_args, cli_admin.cmd_backup),
    ("restore", "unpack a backup into an empty data folder (--data-dir)", cli_admin.add_restore_args,
     cli_admin.cmd_restore),
]


def _common_args(p: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--json`` and ``--threads``: every subcommand takes them."""
    p.add_argument("--data-dir", default=data_dir_default(),
                   help="data folder (default $COWDETECT_DATA_DIR or ./data)")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    p.add_argument("--threads", type=_threads, default=None,
                   help="CPU threads for torch (default $COWDETECT_THREADS or all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m cowdetect", description="Find, fine-tune on and track cows.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, add_args, handler in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common_args(p)
        if add_args is not None:
            add_args(p)
        p.set_defaults(func=handler)
    return parser


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status: 0 ok, 2 an expected failure (bad input, an unusable data
    folder or file: one line on stderr), 1 anything else (one line saying where the traceback is),
    130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    # a failed restore must not write its log into the folder it restores into (a retry would find
    # it not empty); its traceback goes to a temporary file
    data_dir = None if getattr(args, "command", None) == "restore" else getattr(args, "data_dir", None)
    # SIGTERM (a service manager, `kill`) ends a command as Ctrl+C does: its run "interrupted" and
    # resumable, a Ray session shut down, exit 130 — not killed with the run left "running".
    # Put back after: main() also runs inside other programs (tests, notebooks).
    # Only in the main thread can Python set one; a SIGTERM the parent chose to ignore stays ignored.
    ours = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN)
    previous = signal.signal(signal.SIGTERM, _interrupt) if ours else None
    try:
        return _run(args, argv, data_dir)
    finally:
        if ours:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _run(args: argparse.Namespace, argv: list[str], data_dir: Any) -> int:
    """Run the parsed command; the exit status as :func:`main` says."""
    try:
        if getattr(args, "threads", None) is not None:
            from .detector import set_threads
            set_threads(args.threads)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except expected_errors() as exc:
        if os.environ.get("COWDETECT_DEBUG") == "1":  # a library bug can raise ValueError too: show where
            import traceback
            traceback.print_exc()
        print(f"error: {error_text(exc, data_dir)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the one guard of the command line: a bug, said in one line
        where = log_unexpected(argv, data_dir)
        print(f"unexpected error ({type(exc).__name__}: {one_line(str(exc), 300)}); the full traceback is in "
              f"{where}", file=sys.stderr)
        return 1
