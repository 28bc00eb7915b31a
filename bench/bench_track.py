"""Video tracking pipeline: end-to-end speed against the detector alone, and memory on a long video.

Prints, measured side by side in one run (interleaved, medians) on the demo video
(640x360, 25 fps, 12 s) with the CPU default model (pretrained SSD-MobileNetV2):
  * detector-only: DetectorBox.predict on the very frames the pipeline detects (every k-th,
    same batches, frames already decoded in memory) — the floor;
  * pipeline: track_video (decode thread → detect → Norfair → draw → H.264 encode thread);
  * their ratio (the pipeline's overhead; goal ≤ 1.10) and both in frames per second of video;
  * re-tracking with other tracker settings (centroid distance) from the kept detections of an
    earlier run (cowdetect.framecache) against detecting again: the time a second run saves.
Then, with --minutes M (default 10), tracks an M-minute video (the demo looped) and prints
the process's resident memory at 10 %, 50 % and 100 % of it (constant memory: no growth).
Usage: python bench/bench_track.py [--repeats N] [--detect-every K ...] [--minutes M]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect import DetectorBox  # noqa: E402
from cowdetect.config import TrackConfig  # noqa: E402
from cowdetect.demo import render_video  # noqa: E402
from cowdetect.detector import set_threads  # noqa: E402
from cowdetect.framecache import FrameDetections  # noqa: E402
from cowdetect.tracking import track_video  # noqa: E402
from cowdetect.video import VideoReader, VideoWriter  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detect-every", type=int, nargs="+", default=[3, 1])
    parser.add_argument("--minutes", type=float, default=10.0, help="long-video memory check (0: skip)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        video = tmp_path / "demo.mp4"
        with VideoWriter(video, fps=25) as writer:
            for frame, _ in render_video(0, 640, 360, 25, 12.0):
                writer.write(frame)
        frames = [f.rgb for f in VideoReader(video)]
        box = DetectorBox.pretrained("cpu", weights_dir=tmp_path / "weights")
        print(f"{box.architecture} · {len(frames)} frames 640x360 · torch threads {threads}")
        print(f"{'k':>3} {'detector-only s':>16} {'pipeline s':>11} {'ratio':>6} {'detector fps':>13} "
              f"{'pipeline fps':>13}")
        for k in args.detect_every:
            config = TrackConfig(detect_every=k)
            keyed = frames[::k]

            def detector_only() -> None:
                for start in range(0, len(keyed), config.batch_size):
                    batch = keyed[start:start + config.batch_size]
                    box.predict(batch, batch_size=len(batch))

            def pipeline() -> None:
                track_video(video, box, tmp_path / "out.mp4", tmp_path / "t.txt", tmp_path / "t.csv", config)

            detector_only(), pipeline()  # warm-up
            times: dict[str, list[float]] = {"detector": [], "pipeline": []}
            for _ in range(args.repeats):
                for name, fn in (("detector", detector_only), ("pipeline", pipeline)):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            d, p = statistics.median(times["detector"]), statistics.median(times["pipeline"])
            print(f"{k:>3} {d:>16.2f} {p:>11.2f} {p / d:>6.3f} {len(frames) / d:>13.1f} {len(frames) / p:>13.1f}")

        retrack = TrackConfig(distance="centroid", hit_counter_max=15)
        kept = tmp_path / "kept.f32"
        with FrameDetections(kept, box.class_names) as cache:  # an earlier run with the defaults
            track_video(video, box, None, tmp_path / "t.txt", config=TrackConfig(), cache=cache)
        times = {"detect again": [], "kept detections": []}
        for _ in range(args.repeats):
            for name in times:
                t0 = time.perf_counter()
                with FrameDetections(kept, box.class_names) as cache:
                    track_video(video, box, tmp_path / "re.mp4", tmp_path / "re.txt", tmp_path / "re.csv", retrack,
                                cache=cache if name == "kept detections" else None)
                times[name].append(time.perf_counter() - t0)
        again, reuse = statistics.median(times["detect again"]), statistics.median(times["kept detections"])
        print(f"re-track (k=3, centroid): detect again {again:.2f} s, from kept detections {reuse:.2f} s "
              f"-> {again / reuse:.1f}x faster ({len(frames) / reuse:.0f} fps)")

        if args.minutes > 0:
            long_video = tmp_path / "long.mp4"
            total = int(args.minutes * 60 * 25)
            with VideoWriter(long_video, fps=25, preset="ultrafast") as writer:
                for i in range(total):
                    writer.write(frames[i % len(frames)])
            del frames
            marks = {int(total * f): f for f in (0.1, 0.5, 1.0)}
            seen: dict[float, float] = {}

            def progress(done: int, expected: int, frame: object) -> bool:
                if done in marks:
                    seen[marks[done]] = rss_mb()
                return True

            t0 = time.perf_counter()
            result = track_video(long_video, box, tmp_path / "long-out.mp4", tmp_path / "long.txt",
                                 tmp_path / "long.csv", TrackConfig(), progress=progress)
            seconds = time.perf_counter() - t0
            print(f"{args.minutes:g}-minute video: {result.frames} frames in {seconds:.0f} s "
                  f"({result.frames / seconds:.1f} fps); resident memory "
                  + ", ".join(f"{int(f * 100)} %: {mb:.0f} MB" for f, mb in sorted(seen.items())))


if __name__ == "__main__":
    main()
