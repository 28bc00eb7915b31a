"""Live stream tracking: frames dropped per minute and end-to-end latency on a real-time stream.

The bench serves the demo video (640x360, 25 fps, 12 s, looped) as H.264 MPEG-TS over HTTP on
127.0.0.1, paced at real time by its timestamps (tests/streamserver.py, a thread of this process),
and tracks it live for --seconds (default 60) with the CPU default model (pretrained
SSD-MobileNetV2), detecting every 3rd frame, writing 10 s MP4 segments — what
``python -m cowdetect track http://...`` does. It prints, per --batch-size (default: 1, the live
default, and 4, the stored-video default):
  * frames received and tracked, frames dropped (tracking fell behind: goal 0) and per minute;
  * latency, from a decoded frame's arrival from the stream to its annotated copy handed to the
    encoder: median and 95th percentile over the last 250 frames, and over the whole run.
Usage: python bench/bench_live.py [--seconds S] [--batch-size B ...] [--threads N]
"""

from __future__ import annotations

import argparse
from collections import deque
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cowdetect import DetectorBox  # noqa: E402
from cowdetect.config import TrackConfig  # noqa: E402
from cowdetect.demo import render_video  # noqa: E402
from cowdetect.detector import set_threads  # noqa: E402
from cowdetect.live import StreamReader  # noqa: E402
from cowdetect.tracking import track_stream  # noqa: E402
from cowdetect.video import SegmentWriter, list_segments  # noqa: E402
from streamserver import StreamServer, mpegts  # noqa: E402


def run_once(url: str, box: DetectorBox, batch_size: int, seconds: float, folder: Path) -> dict:
    """Track the stream at ``url`` for ``seconds``; the reader's numbers and all latencies."""
    reader = StreamReader(url, timeout=5.0)
    reader.stats.latencies = deque()  # every frame's, for the whole-run columns
    started = time.monotonic()
    segments = SegmentWriter(folder, seconds=10.0, fps=reader.info.fps)
    track_stream(reader, box, segments, folder / "t.mot", None, TrackConfig(detect_every=3, batch_size=batch_size),
                 progress=lambda stats, frame: time.monotonic() - started < seconds)
    summary = reader.stats.summary()
    lat = np.array(reader.stats.latencies) * 1000
    tail = lat[-250:]
    return {**summary, "all_median": float(np.median(lat)), "all_p95": float(np.percentile(lat, 95)),
            "roll_median": float(np.median(tail)), "roll_p95": float(np.percentile(tail, 95)),
            "segments": len(list_segments(folder))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    data, marks = mpegts((frame for frame, _ in render_video(0, 640, 360, 25, 12.0)), fps=25)
    server = StreamServer(data, marks, loops=int(args.seconds * len(args.batch_size) / 12) + 10)
    with tempfile.TemporaryDirectory() as tmp:
        box = DetectorBox.pretrained("cpu", weights_dir=Path(tmp) / "weights")
        print(f"{box.architecture} · stream 640x360 25 fps (MPEG-TS over local HTTP, real time) · "
              f"detect every 3rd · "
              f"{args.seconds:g} s each · torch threads {threads}")
        print(f"{'batch':>5} {'received':>8} {'tracked':>7} {'dropped':>7} {'drop/min':>8} {'fps':>5} "
              f"{'lat med ms':>10} {'lat p95 ms':>10} {'all med':>8} {'all p95':>8} {'segments':>8}")
        for batch in args.batch_size:
            r = run_once(server.url, box, batch, args.seconds, Path(tmp) / f"b{batch}")
            print(f"{batch:>5} {r['frames_received']:>8} {r['frames']:>7} {r['dropped']:>7} "
                  f"{r['dropped_per_minute']:>8.1f} {r['fps']:>5.1f} {r['roll_median']:>10.0f} {r['roll_p95']:>10.0f} "
                  f"{r['all_median']:>8.0f} {r['all_p95']:>8.0f} {r['segments']:>8}", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
