"""Frames from a video: import-video's time against the decoder alone, side by side in one run.

Makes a video of the demo cows (default 1280x720, 25 fps, 20 s, H.264: 5 s of the demo rendered at
half size, upscaled and looped, because rendering is slow), or reads --video, then times,
interleaved, medians of --repeats (wall and CPU seconds):
  * bare decode: a PyAV loop over the frames (FFmpeg threads, no colour conversion) — the floor;
  * reader: cowdetect.video.VideoReader over every frame (RGB, upright) — what tracking reads;
  * import: cowdetect.frames.import_video_frames(every=1 s) into a fresh store (decode, RGB for the
    sampled frames only, pHash, JPEG q95, store); the store and its video row are made untimed;
and prints import / bare decode (goal ≤ 1.2) and import / reader.
Usage: python bench/bench_import_video.py [--size 1280x720] [--seconds 20] [--repeats 3] [--every 1]
                                         [--video FILE]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect.demo import render_video  # noqa: E402
from cowdetect.frames import import_video_frames  # noqa: E402
from cowdetect.store import Store  # noqa: E402
from cowdetect.video import VideoReader, VideoWriter, probe_video  # noqa: E402


def bare_decode(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def make_video(path: Path, width: int, height: int, fps: int, seconds: float) -> None:
    rendered = [cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
                for frame, _ in render_video(0, width // 2, height // 2, fps, min(seconds, 5.0))]
    with VideoWriter(path, fps=fps, background=True) as writer:
        for frame in itertools.islice(itertools.cycle(rendered), int(round(seconds * fps))):
            writer.write(frame)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--video", type=Path, default=None, help="time this video file instead of making one")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = args.video or tmp_path / "cows.mp4"
        if args.video is None:
            t0 = time.perf_counter()
            make_video(video, width, height, args.fps, args.seconds)
            print(f"made the video in {time.perf_counter() - t0:.1f} s")
        info = probe_video(video)
        print(f"video: {info.frames} frames {info.width}x{info.height} at {info.fps:g} fps, {info.duration:g} s, "
              f"{video.stat().st_size / 1e6:.1f} MB; {len(os.sched_getaffinity(0))} CPU cores")
        stores = itertools.count()
        added = [0]

        def reader() -> None:
            sum(1 for _ in VideoReader(video))

        def importer() -> None:
            store = Store(tmp_path / f"data-{next(stores)}")
            video_id = store.add_video(video.read_bytes(), "cows.mp4", info.width, info.height, info.fps,
                                       info.frames)[0].id
            t0, c0 = time.perf_counter(), cpu_seconds()
            added[0] = import_video_frames(store, video_id, every=args.every).added
            return time.perf_counter() - t0, cpu_seconds() - c0

        def timed(fn) -> tuple[float, float]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            fn()
            return time.perf_counter() - t0, cpu_seconds() - c0

        steps = {"bare decode": lambda: timed(lambda: bare_decode(video)), "reader": lambda: timed(reader),
                 "import": importer}
        for fn in steps.values():  # warm-up: file cache, imports
            fn()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, fn in steps.items():
                times[name].append(fn())
        wall = {name: statistics.median(t[0] for t in runs) for name, runs in times.items()}
        cpu = {name: statistics.median(t[1] for t in runs) for name, runs in times.items()}
        print(f"{'':>12} {'wall s':>7} {'CPU s':>6} {'frames/s':>9}")
        for name in steps:
            print(f"{name:>12} {wall[name]:>7.2f} {cpu[name]:>6.2f} {info.frames / wall[name]:>9.0f}")
        print(f"import (every {args.every:g} s: {added[0]} frames stored) / bare decode: "
              f"{wall['import'] / wall['bare decode']:.2f} (goal <= 1.2); import / reader: "
              f"{wall['import'] / wall['reader']:.2f}")


if __name__ == "__main__":
    main()
