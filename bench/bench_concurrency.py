"""Concurrency, measured: P processes importing the same N images at once, and J jobs started in the
same second on one device.

Prints, for the import: processes that failed, image rows, image files, rows whose file is missing;
for the jobs: how many ran, and the largest number running at once (from their rows' start and end
times, to the millisecond). Usage: python bench/bench_concurrency.py [--images 200] [--processes 4] [--jobs 3]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect.store import Store  # noqa: E402


def write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8)).save(buffer, "JPEG")
        paths.append(folder / f"{i}.jpg")
        paths[-1].write_bytes(buffer.getvalue())
    return paths


def import_race(tmp: Path, images: int, processes: int) -> dict[str, int]:
    files = write_images(tmp / "images", images)
    data = tmp / "import-data"
    Store(data)
    procs = [subprocess.Popen([sys.executable, "-m", "cowdetect", "import-images", *map(str, files), "--data-dir",
                               str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env={"COWDETECT_THREADS": "1", "PATH": "/usr/bin:/bin"})
             for _ in range(processes)]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    records = Store(data).images()
    on_disk = [p for p in (data / "images").rglob("*") if p.is_file()]
    return {"failed processes": sum(proc.returncode != 0 for proc in procs),
            "tracebacks": sum("Traceback" in e for e in errors), "rows": len(records), "files": len(on_disk),
            "rows without a file": sum(not r.path.is_file() for r in records)}


def job_race(tmp: Path, count: int) -> dict[str, int]:
    from cowdetect import jobs
    from cowdetect.demo import make_demo

    store = Store(tmp / "job-data")
    make_demo(store, n_train=6, n_val=0, n_test=0, size=(128, 96), video=False)
    ids = [jobs.create_training_run(store, jobs.training_settings(
        store, base="untrained:fasterrcnn_mobilenet_v3_large_320_fpn", iterations=3 + i, checkpoint_every=0,
        eval_every=0, val_split="", test_split="")) for i in range(count)]
    for run_id in ids:
        jobs.start_worker(store, run_id)
    deadline = time.monotonic() + 600
    while any(store.run(i).status in ("queued", "running") for i in ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    runs = [store.run(i) for i in ids]
    events = sorted([(r.started_at, 1) for r in runs if r.started_at] + [(r.finished_at, -1) for r in runs
                                                                           if r.finished_at])
    most, now = 0, 0
    for _, step in events:
        now += step
        most = max(most, now)
    return {"jobs done": sum(r.status == "done" for r in runs), "most running at once": most}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        imports = import_race(Path(tmp), args.images, args.processes)
        ran = job_race(Path(tmp), args.jobs)
    print(f"| {args.processes} processes import the same {args.images} images | " +
          " | ".join(f"{k}: {v}" for k, v in imports.items()) + " |")
    print(f"| {args.jobs} jobs started in the same second, one device | " +
          " | ".join(f"{k}: {v}" for k, v in ran.items()) + " |")


if __name__ == "__main__":
    main()
