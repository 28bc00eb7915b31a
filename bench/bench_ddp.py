"""Training on 2 processes (DistributedDataParallel, gloo) against 1 process: same results, how much faster.

Three runs of the pretrained SSD on the same demo images, each through the training job (the 2-rank
one through torchrun, as `train --nproc 2` runs it), every process with one CPU thread:

  A  1 process,  batch 8,            seed 0
  B  2 processes, batch 4 each (8),  seed 0   <- what is compared with A
  C  1 process,  batch 8,            seed 1   <- how far two 1-process runs differ by chance

B cannot match A step for step: its ranks draw other images per step (each its shard of the
epoch), flip and jitter them with other random draws, and on CPU each rank's batch norm
normalises over its 4 images, not 8 (SyncBatchNorm is GPU-only). So the tolerance is the
run-to-run noise: B passes when its loss (in windows of 10 iterations) and its final test
mAP50 differ from A's by no more than twice as much as C's do (mAP50 floor 0.05).
Scaling: iterations/s of A and B from the runs' own progress clocks (the first 5 iterations,
model loading and torchrun's start left out); the ideal ratio is 2 on 2 idle cores.

Usage: python bench/bench_ddp.py [--iterations 60] [--train 40] [--test 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["COWDETECT_THREADS"] = "1"  # before torch: each process, and each rank, gets one thread
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cowdetect import Store, jobs, make_demo  # noqa: E402

WINDOW = 10


def train(store: Store, iterations: int, nproc: int, seed: int) -> dict:
    """One run through the job; returns its loss points, iterations/s and test mAP50 after."""
    settings = jobs.training_settings(store, base="pretrained", iterations=iterations, batch_size=8,
                                      checkpoint_every=0, eval_every=0, val_split="", seed=seed, nproc=nproc,
                                      name=f"bench-ddp-{nproc}x-seed{seed}")
    started = time.monotonic()
    run = jobs.run_training(store, jobs.create_training_run(store, settings), log=lambda message: None)
    assert run.status == "done", run
    points = store.points(run.id)
    warm = points[5:]
    rate = (warm[-1]["iteration"] - warm[0]["iteration"]) / (warm[-1]["seconds"] - warm[0]["seconds"])
    return {"loss": [p["loss"] for p in points], "rate": rate, "map_50": run.metrics["after"]["map_50"],
            "before": run.metrics["before"]["map_50"], "wall": time.monotonic() - started}


def windows(loss: list[float]) -> list[float]:
    return [sum(loss[i:i + WINDOW]) / len(loss[i:i + WINDOW]) for i in range(0, len(loss), WINDOW)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "data")
        make_demo(store, n_train=args.train, n_val=0, n_test=args.test, video=False)
        a = train(store, args.iterations, 1, 0)
        b = train(store, args.iterations, 2, 0)
        c = train(store, args.iterations, 1, 1)
    wa, wb, wc = windows(a["loss"]), windows(b["loss"]), windows(c["loss"])
    print(f"SSD-MobileNetV2 (pretrained), demo data {args.train} train / {args.test} test images, "
          f"{args.iterations} iterations, batch 8 in all, 1 CPU thread per process; load average "
          f"{os.getloadavg()[0]:.1f} at the end (the CPU is shared with other work)")
    print("\n| iterations | A: 1 x 8, seed 0 | B: 2 x 4, seed 0 | C: 1 x 8, seed 1 | B vs A | C vs A |")
    print("|---|---|---|---|---|---|")
    for k, (x, y, z) in enumerate(zip(wa, wb, wc)):
        print(f"| {k * WINDOW + 1}-{min((k + 1) * WINDOW, args.iterations)} | {x:.4f} | {y:.4f} | {z:.4f} | "
              f"{abs(y - x) / x:.1%} | {abs(z - x) / x:.1%} |")
    loss_ddp = max(abs(y - x) / x for x, y in zip(wa, wb))
    loss_seed = max(abs(z - x) / x for x, z in zip(wa, wc))
    map_ddp, map_seed = abs(b["map_50"] - a["map_50"]), abs(c["map_50"] - a["map_50"])
    print(f"\n| run | test mAP50 before → after | iterations/s | wall s (loading, evaluations included) |")
    print("|---|---|---|---|")
    for name, r in (("A 1 process", a), ("B 2 processes", b), ("C 1 process, seed 1", c)):
        print(f"| {name} | {r['before']:.3f} → {r['map_50']:.3f} | {r['rate']:.3f} | {r['wall']:.0f} |")
    print(f"\nspeed-up of 2 processes over 1 (same batch of 8): {b['rate'] / a['rate']:.2f}x")
    loss_ok = loss_ddp <= 2 * loss_seed
    map_ok = map_ddp <= max(0.05, 2 * map_seed)
    print(f"loss windows: B differs from A by at most {loss_ddp:.1%}, C by {loss_seed:.1%} -> "
          f"{'within' if loss_ok else 'OUTSIDE'} the tolerance (2x the seed difference)")
    print(f"mAP50: |B - A| = {map_ddp:.3f}, |C - A| = {map_seed:.3f} -> {'within' if map_ok else 'OUTSIDE'} the "
          f"tolerance (max(0.05, 2 x {map_seed:.3f}))")


if __name__ == "__main__":
    main()
