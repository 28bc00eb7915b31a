"""Many videos on Ray: 1 against 2 local workers (one CPU thread each), and the tracks they give
against a plain `track` of each video.

Eight demo-style videos (the demo video's scene and walkers rendered with seeds 0-7, 640x360,
25 fps; distinct files, since the store keeps one copy of identical bytes) are tracked with the
pretrained SSD, detecting every 3rd frame (the default), three ways, each in a fresh data folder
so no run reads another's kept detections:

  A  track-many, a local Ray with 1 worker
  B  track-many, a local Ray with 2 workers      <- videos/min against A
  C  `track` of each video, one after the other  <- the tracks A and B must equal, file for file

Wall time counts everything a user waits for: Ray's start, the workers' start, the tracking and the
writing of every run's files. Ideal ratio on 2 idle cores: 2.

Usage: python bench/bench_ray.py [--videos 8] [--seconds 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "COWDETECT_THREADS": "1", "PYTHONPATH": str(ROOT)}


def make_videos(folder: Path, count: int, seconds: float) -> list[Path]:
    """The videos, rendered once into ``folder`` (drawing them takes longer than tracking them)."""
    from cowdetect.demo import render_video
    from cowdetect.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = folder / f"cows{seed}-{seconds:g}s.mp4"
        if not path.is_file():
            write_video((frame for frame, _ in render_video(seed, 640, 360, 25, seconds)), path, fps=25)
        paths.append(path)
    return paths


def cowdetect(*args: str) -> tuple[dict, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cowdetect", *args, "--json"], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"cowdetect {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout), time.monotonic() - started


def tracks(data: Path, run_id: int) -> str:
    return (data / "runs" / f"run-{run_id}" / "tracks.mot.txt").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--videos-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench-ray-videos",
                        help="where the rendered videos are kept between runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        folder = Path(tmp)
        videos = make_videos(args.videos_dir, args.videos, args.seconds)
        results = {}
        for label, workers in (("A", 1), ("B", 2)):
            data = folder / f"data-{label}"
            report, wall = cowdetect("track-many", *map(str, videos), "--model", "pretrained", "--workers",
                                     str(workers), "--data-dir", str(data))
            assert report["status"] == "done", report
            results[label] = (data, report, wall)
            print(f"{label}: {workers} worker(s): {wall:.1f} s, {len(videos) / wall * 60:.2f} videos/min",
                  flush=True)
        plain = folder / "data-C"
        started = time.monotonic()
        alone = [cowdetect("track", str(v), "--model", "pretrained", "--out", str(folder / f"plain-{v.stem}.mp4"),
                           "--data-dir", str(plain))[0] for v in videos]
        wall_c = time.monotonic() - started
        print(f"C: plain track, one video after another: {wall_c:.1f} s, {len(videos) / wall_c * 60:.2f} videos/min")
        for label in "AB":
            data, report, _ = results[label]
            same = sum(tracks(data, v["run_id"]) == tracks(plain, c["run_id"])
                       for v, c in zip(report["videos"], alone))
            print(f"{label}: tracks identical to plain track for {same} of {len(videos)} videos")
        ratio = results["A"][2] / results["B"][2]
        frames = sum(v["frames"] for v in results["B"][1]["videos"])
        print(f"2 workers / 1 worker: {ratio:.2f}x videos/min ({frames} frames in all, "
              f"{sum(v['tracks'] for v in results['B'][1]['videos'])} tracks)")


if __name__ == "__main__":
    main()
