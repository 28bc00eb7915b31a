"""Backup under load, measured: a backup taken while a training run checkpoints and two importers
write, then restored into an empty folder and compared with its manifest.

Backups are taken back to back under the load until the run has written checkpoints while one
ran. Prints a table, one line per backup: seconds, size, the load meanwhile (images imported,
checkpoints written), rows in the manifest vs in the restored database, files in the manifest vs
in the restored folder, checksum mismatches (must be 0), rows whose file is missing or does not
hash to the row's sha256 (must be 0); then the same folder's backup time without load, and the
rows per table of the last backup.
Usage: python bench/bench_backup.py [--train 40] [--checkpoint-every 2] [--checkpoints 2] [--gz] [--keep DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cowdetect.backup import MANIFEST, BackupReport, backup  # noqa: E402
from cowdetect.restore import restore  # noqa: E402
from cowdetect.store import Store  # noqa: E402

ARCH = "fasterrcnn_mobilenet_v3_large_320_fpn"
ENV = {**os.environ, "COWDETECT_THREADS": "1", "PYTHONPATH": str(ROOT)}
IMPORTER = """
import sys, numpy as np
from pathlib import Path
from cowdetect.detections import Detections
from cowdetect.store import Store
store, stop, seed, i = Store(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), 0
while not stop.exists():
    image = np.random.default_rng([seed, i]).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    store.add_image(image, f"import{seed}-{i}.png", boxes=Detections(np.array([[5, 5, 60, 50]]), np.array([1])))
    i += 1
"""


def cowdetect(*args: str, **popen: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cowdetect", *args], cwd=ROOT, env=ENV, **popen)


def wait_until(predicate, what: str, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_load(data: Path, stop: Path, iterations: int, every: int) -> list[subprocess.Popen]:
    """A training run checkpointing every ``every`` iterations, and two importers; returns once all
    three write (the run has checkpointed once, the importers have added 10 images)."""
    store = Store(data)
    images = store.count_images()
    train = cowdetect("train", "--data-dir", str(data), "--model", f"untrained:{ARCH}", "--iterations",
                      str(iterations), "--checkpoint-every", str(every), "--eval-every", "0", "--threads", "1",
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    importers = [subprocess.Popen([sys.executable, "-c", IMPORTER, str(data), str(stop), str(seed)], env=ENV,
                                  stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    procs = [train, *importers]

    def writing() -> bool:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"a load process ended early: {[p.communicate()[1][-2000:] for p in procs]}")
        runs = store.runs("train")
        return bool(runs) and runs[0].checkpoint_iteration >= every and store.count_images() >= images + 10
    wait_until(writing, "the training run's first checkpoint and the importers' first images")
    return procs


def stop_load(procs: list[subprocess.Popen], stop: Path) -> None:
    stop.touch()
    for importer in procs[1:]:
        importer.wait(timeout=120)
    procs[0].terminate()  # the run is left interrupted; the bench only needed it writing
    procs[0].wait(timeout=120)


def checkpoints(data: Path) -> int:
    return sum(1 for _ in (data / "runs").rglob("iter_*.pt"))


def compare(archive: Path, restored: Path) -> dict[str, Any]:
    """The manifest inside ``archive`` against the restored folder: rows, files, checksums."""
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())
    store = Store(restored)
    with store.connect() as conn:
        rows = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in manifest["rows"]}
    on_disk = {p.relative_to(restored).as_posix(): p for p in restored.rglob("*") if p.is_file()}
    mismatches = sum(name not in on_disk or hashlib.sha256(on_disk[name].read_bytes()).hexdigest() != entry["sha256"]
                     for name, entry in manifest["files"].items() if name != "cowdetect.sqlite")
    bad_rows = sum(not im.path.is_file() or hashlib.sha256(im.path.read_bytes()).hexdigest() != im.sha256
                   for im in store.images())
    bad_rows += sum(not m.checkpoint.is_file() for m in store.models())
    bad_rows += sum(bool(r.checkpoint) and not store.inside(r.checkpoint).is_file() for r in store.runs())
    return {"manifest": manifest, "rows": rows, "files": len(on_disk), "mismatches": mismatches,
            "bad_rows": bad_rows}


def backups_under_load(store: Store, tmp: Path, procs: list[subprocess.Popen], suffix: str,
                       want: int) -> list[dict[str, Any]]:
    """Backups back to back while the load runs, until ``want`` checkpoints were written while one
    ran (at most 8 backups); each with the images imported and checkpoints written meanwhile."""
    taken: list[dict[str, Any]] = []
    while sum(t["checkpoints"] for t in taken) < want and len(taken) < 8:
        images, ckpts = store.count_images(), checkpoints(store.data_dir)
        made = backup(store, tmp / f"backup-{len(taken) + 1}{suffix}")
        taken.append({"report": made, "imported": store.count_images() - images,
                      "checkpoints": checkpoints(store.data_dir) - ckpts})
        if any(p.poll() is not None for p in procs):
            raise SystemExit("a load process ended while backups were taken")
    return taken


def check_each(taken: list[dict[str, Any]], tmp: Path, keep: bool) -> None:
    """Restore every backup into an empty folder and compare it with its manifest."""
    for number, entry in enumerate(taken, 1):
        archive, restored = entry["report"].path, tmp / f"restored-{number}"
        entry["restore"] = restore(archive, restored)
        entry.update(compare(archive, restored))
        if not keep:
            shutil.rmtree(restored)
            archive.unlink()


def report(taken: list[dict[str, Any]], idle: BackupReport) -> None:
    print(f"\n| backup | seconds | files | MB | MB/s | images imported meanwhile | checkpoints written meanwhile "
          f"| rows in manifest | rows restored | files restored | checksum mismatches | rows without their file "
          f"| referenced files missing | restore seconds |")
    print("|" + "---:|" * 14)
    for number, t in enumerate(taken, 1):
        r = t["report"]
        print(f"| {number} | {r.seconds:.2f} | {r.files} | {r.bytes / 1e6:.0f} | {r.bytes / 1e6 / r.seconds:.0f} "
              f"| {t['imported']} | {t['checkpoints']} | {sum(t['manifest']['rows'].values())} "
              f"| {sum(t['rows'].values())} | {t['files']} | {t['mismatches']} | {t['bad_rows']} "
              f"| {len(r.missing)} | {t['restore'].seconds:.2f} |")
    print(f"\nthe same folder backed up after the load stopped: {idle.seconds:.2f} s, {idle.files} files, "
          f"{idle.bytes / 1e6:.0f} MB ({idle.bytes / 1e6 / idle.seconds:.0f} MB/s)")
    last = taken[-1]
    print(f"\nrows per table, backup {len(taken)}:\n")
    print("| table | rows in manifest | rows restored |\n|---|---:|---:|")
    for table, count in last["manifest"]["rows"].items():
        print(f"| {table} | {count} | {last['rows'][table]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=1000, help="more than it reaches: it is stopped")
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, default=2, help="back up until this many were written meanwhile")
    parser.add_argument("--gz", action="store_true", help="write .tar.gz (default .tar)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder)")
    args = parser.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bench-backup-"))
    data, stop, suffix = tmp / "data", tmp / "stop", ".tar.gz" if args.gz else ".tar"
    subprocess.run([sys.executable, "-m", "cowdetect", "demo", "--data-dir", str(data), "--train", str(args.train),
                    "--val", "10", "--test", "10", "--no-video"], cwd=ROOT, env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = start_load(data, stop, args.iterations, args.checkpoint_every)
    store = Store(data)
    try:
        taken = backups_under_load(store, tmp, procs, suffix, args.checkpoints)
    finally:
        stop_load(procs, stop)
    idle = backup(store, tmp / f"idle{suffix}")
    check_each(taken, tmp, bool(args.keep))
    report(taken, idle)
    if not args.keep:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
